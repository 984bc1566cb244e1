//! Virtual links written as paths. ETSI GS QKD 015 gives a virtual link at each node its
//! previous hop and its next hop(s): `virt_next_hop` is a leaf-list for multicast over shared
//! sub-paths, `ordered-by system`. TeraFlowSDN's QKD service handler writes there the whole
//! rest of the path instead, up to the far end (`[next hop, ..., qkdl_remote]`). The datastore
//! would sort such a list and lose its order, so the agent reads it, as it arrives, into what
//! 015 means: the first element, the next hop, is kept; the rest of the path is checked (each
//! node once, never this node) and then dropped, as the next hop knows its own way on.

use qkdn_yang::{DataError, DataPath};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

/// The write filter of the node's RESTCONF server (see `qkdn_yang::restconf::WriteFilter`):
/// every virtual link in the body whose `virt_next_hop` is a path to its `qkdl_remote` keeps
/// only its next hop.
pub fn next_hops_of_paths(node: Uuid) -> impl Fn(&DataPath, Json) -> Result<Json, DataError> {
    move |_target, mut body| {
        rewrite(node, &mut body)?;
        Ok(body)
    }
}

fn rewrite(node: Uuid, value: &mut Json) -> Result<(), DataError> {
    match value {
        Json::Array(items) => items.iter_mut().try_for_each(|item| rewrite(node, item)),
        Json::Object(members) => {
            keep_next_hop(node, members)?;
            members.values_mut().try_for_each(|child| rewrite(node, child))
        }
        _ => Ok(()),
    }
}

/// A member of `members` by its name without module prefix.
fn member<'a>(members: &'a Map<String, Json>, name: &str) -> Option<(&'a String, &'a Json)> {
    members.iter().find(|(k, _)| k.rsplit(':').next() == Some(name))
}

fn uuid(value: &Json) -> Option<Uuid> {
    value.as_str().and_then(|s| s.parse().ok())
}

/// Rewrites the link object `members` when its `virt_next_hop` is a path to its far end.
fn keep_next_hop(node: Uuid, members: &mut Map<String, Json>) -> Result<(), DataError> {
    let far_end = member(members, "qkdl_remote")
        .and_then(|(_, remote)| remote.as_object())
        .and_then(|remote| member(remote, "qkdn_id"))
        .and_then(|(_, id)| uuid(id));
    let Some((name, Json::Array(hops))) = member(members, "virt_next_hop") else {
        return Ok(());
    };
    let path: Option<Vec<Uuid>> = hops.iter().map(uuid).collect();
    let Some(path) = path.filter(|p| p.len() > 1 && p.last() == far_end.as_ref()) else {
        return Ok(());
    };
    let prev = member(members, "virt_prev_hop").and_then(|(_, p)| uuid(p));
    let mut seen = std::collections::BTreeSet::new();
    if let Some(hop) = path.iter().find(|h| **h == node || Some(**h) == prev || !seen.insert(**h)) {
        let at = member(members, "qkdl_id")
            .and_then(|(_, id)| id.as_str())
            .map(|id| {
                format!(
                    "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link[qkdl_id='{id}']/virt_next_hop"
                )
            })
            .unwrap_or_else(|| "/etsi-qkd-sdn-node:qkd_node/qkd_links".to_owned());
        return Err(DataError::invalid_value(format!(
            "virt_next_hop, read as the path to the far end, passes node {hop} twice or comes \
             back through this node or its previous hop"
        ))
        .at(at));
    }
    let name = name.clone();
    members.insert(name, json!([path[0].to_string()]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000001-0000-0000-0000-000000000000";
    const B: &str = "00000002-0000-0000-0000-000000000000";
    const C: &str = "00000003-0000-0000-0000-000000000000";

    fn filter(node: &str, body: Json) -> Result<Json, DataError> {
        next_hops_of_paths(node.parse().unwrap())(&DataPath::root(), body)
    }

    #[test]
    fn a_path_to_the_far_end_keeps_its_next_hop_wherever_the_link_is_in_the_body() {
        let link = |next: Json| {
            json!({"qkdl_id": "7f000000-0000-4000-8000-0000000000ac",
            "qkdl_remote": {"qkdn_id": A}, "virt_prev_hop": null, "virt_next_hop": next})
        };
        let body = json!({"qkd_links": {"qkd_link": [link(json!([B, A]))]}});
        let out = filter(C, body).unwrap();
        assert_eq!(out["qkd_links"]["qkd_link"][0]["virt_next_hop"], json!([B]));
        // Prefixed names, a whole node.
        let mut prefixed = link(json!([B, A]));
        prefixed["etsi-qkd-sdn-node:virt_next_hop"] = prefixed["virt_next_hop"].take();
        prefixed.as_object_mut().unwrap().remove("virt_next_hop");
        let body = json!({"etsi-qkd-sdn-node:qkd_node": {"qkd_links": {"qkd_link": [prefixed]}}});
        let out = filter(C, body).unwrap();
        let kept = &out["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"][0];
        assert_eq!(kept["etsi-qkd-sdn-node:virt_next_hop"], json!([B]));
        // Next hops that are not a path to the far end (multicast) stay as written.
        let body = link(json!([B, C]));
        assert_eq!(filter(C, body.clone()).unwrap(), body);
    }

    #[test]
    fn a_path_through_this_node_or_twice_through_another_is_refused() {
        for (node, path) in [(C, json!([B, C, A])), (C, json!([B, B, A]))] {
            let body = json!({"qkdl_id": "7f000000-0000-4000-8000-0000000000ac",
                "qkdl_remote": {"qkdn_id": A}, "virt_next_hop": path});
            let err = filter(node, body).unwrap_err();
            assert!(err.message.contains("path to the far end"), "{err:?}");
            assert!(err.path.unwrap().ends_with("/virt_next_hop"));
        }
    }
}
