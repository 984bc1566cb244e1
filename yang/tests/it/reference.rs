//! The shared reference material: the hand-written example instances (validated with qkdn's own
//! libyang context, whose fixed `when` accepts the PHYS/VIRT example the ETSI text rejects), and
//! the TeraFlowSDN QKD node fixtures, loaded through the tolerant input path and printed back as
//! strict RFC 7951.

use qkdn_yang::datastore::{ContentFilter, Datastore};
use qkdn_yang::ly::{Content, validate_data};
use qkdn_yang::{DataPath, YangContext};
use serde_json::Value as Json;

use super::harness::{TestServer, reference_dir};

fn read(path: &std::path::Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn reference_examples_validate_with_our_modules() {
    let ctx = YangContext::qkdn().unwrap();
    let dir = reference_dir().join("yang/examples");
    let mut seen = 0;
    for name in ["qkd_node-rfc7951-basic.json", "qkd_node-rfc7951-phys-virt-links.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        // Strict: no tolerance, full validation with state allowed (a complete datastore).
        validate_data(&ctx, &text, Content::All).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        seen += 1;
    }
    assert_eq!(seen, 2);
}

/// The TeraFlowSDN fixtures that describe a QKD node.
fn tfs_node_files() -> Vec<std::path::PathBuf> {
    let dir = reference_dir().join("tfs-data");
    let mut files = vec![dir.join("mock_qkd_node/startup.json")];
    for sub in ["mock_qkd_nodes_flask", "qkd_end2end"] {
        let mut found: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("node")))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// Drops members that are not YANG data (the mock server's own settings).
fn data_members(doc: Json) -> Json {
    match doc {
        Json::Object(mut map) => {
            map.remove("fc-restconf");
            Json::Object(map)
        }
        other => other,
    }
}

#[tokio::test]
async fn tfs_fixtures_load_tolerantly_and_print_strictly() {
    let files = tfs_node_files();
    assert_eq!(files.len(), 7, "expected the seven TeraFlowSDN node fixtures");
    let ctx = YangContext::qkdn().unwrap();
    for file in files {
        let raw = read(&file);
        // Through the datastore's start-up path, as the file is...
        let ds = Datastore::builder(ctx.clone()).data(raw.clone()).build().unwrap();
        let printed = ds.snapshot().get_json(&ctx, &DataPath::root(), ContentFilter::All).unwrap();
        let data = &printed["ietf-restconf:data"];
        validate_data(&ctx, &data.to_string(), Content::All)
            .unwrap_or_else(|e| panic!("{}: printed data invalid: {e:?}", file.display()));
        let node = &data["etsi-qkd-sdn-node:qkd_node"];
        assert!(node.is_object(), "{}: no qualified qkd_node in {printed}", file.display());
        for iface in node["qkd_interfaces"]["qkd_interface"].as_array().into_iter().flatten() {
            assert!(
                iface["qkdi_id"].is_u64(),
                "{}: qkdi_id not printed as a number",
                file.display()
            );
        }
        // ...and through RESTCONF: PUT of the YANG data of the file, then GET.
        let doc = data_members(raw);
        let server = TestServer::start(serde_json::json!({})).await;
        let response = server
            .http()
            .put(server.url("/restconf/data"))
            .header("content-type", "application/json")
            .body(doc.to_string())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}: PUT {}",
            file.display(),
            response.text().await.unwrap()
        );
        let got: Json = server.get_json("/restconf/data/etsi-qkd-sdn-node:qkd_node").await;
        validate_data(&ctx, &got.to_string(), Content::All).unwrap();
        assert_eq!(&got["etsi-qkd-sdn-node:qkd_node"]["qkdn_id"], &node["qkdn_id"]);
    }
}

/// The groupings a module defines and how often each is used, read from its text.
fn groupings_and_uses(path: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut groupings, mut uses) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("grouping"), Some(name)) => groupings.push(name.to_owned()),
            (Some("uses"), Some(name)) => uses.push(name.trim_end_matches(';').to_owned()),
            _ => {}
        }
    }
    groupings.sort();
    uses.sort();
    (groupings, uses)
}

/// Beyond an equal schema tree, the 015 node module is built from the reference's groupings,
/// used in the same places, so that other modules and tools that `uses` them find them.
#[test]
fn the_node_module_has_the_reference_groupings() {
    let file = "etsi-qkd-sdn-node@2022-01-30.yang";
    let ours = groupings_and_uses(&super::harness::repo_root().join("yang/modules").join(file));
    let reference = groupings_and_uses(&reference_dir().join("yang").join(file));
    assert_eq!(ours.0, reference.0, "groupings");
    assert_eq!(ours.1, reference.1, "uses");
}
