//! Registration parsing (every field at fault, by pointer) and the entries of a path.

use serde_json::json;

use super::*;

const A: &str = "00000001-0000-0000-0000-000000000000";
const B: &str = "00000002-0000-0000-0000-000000000000";
const C: &str = "00000003-0000-0000-0000-000000000000";

fn pointers(body: Json) -> Vec<String> {
    parse_spec(&body).unwrap_err().into_iter().map(|e| e.pointer).collect()
}

#[test]
fn a_good_registration_parses() {
    let spec = parse_spec(&json!({"app_id": "5e1f0000-0000-4000-8000-000000000001",
        "server": {"sae_id": "sae-a", "node": A}, "clients": [{"sae_id": "sae-c", "node": C}],
        "qos": {"rate_bps": 1000, "max_hops": 3, "exclude_nodes": [B], "ttl_s": 60}}))
    .unwrap();
    assert_eq!(spec.qos.rate_bps, 1000);
    assert_eq!(spec.qos.max_hops, Some(3));
    assert!(spec.qos.exclude_nodes.contains(&B.parse().unwrap()));
    assert_eq!(spec.client_nodes(), vec![C.parse::<Uuid>().unwrap()]);
}

#[test]
fn every_field_at_fault_is_named() {
    assert_eq!(
        pointers(
            json!({"server": {"sae_id": "", "node": "x"}, "clients": [], "qos": {"rate_bps": -1}, "colour": 1})
        ),
        ["/colour", "/server/sae_id", "/server/node", "/clients", "/qos/rate_bps"]
    );
    assert_eq!(
        pointers(
            json!({"app_id": 7, "server": {"sae_id": "a", "node": A}, "clients": [{"sae_id": "a", "node": A}],
            "qos": {"rate_bps": 10, "max_rate_bps": 5, "max_hops": 0, "exclude_locations": [1]}})
        ),
        [
            "/app_id",
            "/qos/exclude_locations/0",
            "/qos/max_rate_bps",
            "/qos/max_hops",
            "/clients/0/sae_id",
            "/clients/0/node"
        ]
    );
    assert_eq!(
        pointers(
            json!({"server": {"sae_id": "a", "node": A}, "clients": [{"sae_id": "a", "node": A}], "qos": {"rate_bps": 10}})
        ),
        ["/clients/0/sae_id", "/clients/0/node"]
    );
    assert_eq!(pointers(json!([1])), [""]);
}

fn app(legs: Vec<Leg>, clients: Vec<(&str, &str)>) -> Application {
    Application {
        spec: AppSpec {
            app_id: "5e1f0000-0000-4000-8000-000000000001".parse().unwrap(),
            server: Endpoint { sae_id: "sae-a".into(), node: A.parse().unwrap() },
            clients: clients
                .into_iter()
                .map(|(s, n)| Endpoint { sae_id: s.into(), node: n.parse().unwrap() })
                .collect(),
            qos: Qos { rate_bps: 500, ..Qos::default() },
        },
        state: AppState::Active,
        reason: None,
        legs,
        created: "2026-01-01T00:00:00Z".into(),
        reroutes: 0,
        candidates: Vec::new(),
        segment: None,
    }
}

#[test]
fn a_relayed_leg_puts_a_virtual_link_on_every_node_and_apps_at_the_ends() {
    let (a, b, c) = (A.parse().unwrap(), B.parse().unwrap(), C.parse().unwrap());
    let id: Uuid = "5e1f0000-0000-4000-8000-000000000001".parse().unwrap();
    let link = virtual_link_id(id, c);
    let leg = Leg {
        client_node: c,
        link,
        nodes: vec![a, b, c],
        links: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
    };
    let entries = desired_entries(&app(vec![leg], vec![("sae-c", C)]));
    let shape: Vec<(Uuid, EntryKind, Uuid)> =
        entries.iter().map(|e| (e.node, e.kind, e.id)).collect();
    assert_eq!(
        shape,
        [
            (a, EntryKind::Link, link),
            (b, EntryKind::Link, link),
            (c, EntryKind::Link, link),
            (a, EntryKind::App, id),
            (c, EntryKind::App, id)
        ]
    );
    assert_eq!(json!(entries[1].body)["virt_prev_hop"], json!(A));
    assert_eq!(json!(entries[1].body)["virt_next_hop"], json!([C]));
    assert_eq!(json!(entries[2].body)["qkdl_remote"]["qkdn_id"], json!(A));
    assert!(json!(entries[0].body).get("virt_prev_hop").is_none());
    assert_eq!(json!(entries[4].body)["server_app_id"], json!("sae-c"));
    assert_eq!(json!(entries[4].body)["client_app_id"], json!(["sae-a"]));
    assert_eq!(json!(entries[3].body)["backing_qkdl_id"], json!([link.to_string()]));
    assert_eq!(json!(entries[3].body)["app_qos"]["min_bandwidth"], json!(500));
}

#[test]
fn neighbours_use_their_physical_link_and_several_clients_get_their_own_entries() {
    let (a, b, c) = (A.parse().unwrap(), B.parse().unwrap(), C.parse().unwrap());
    let phys = Uuid::from_u128(9);
    let legs = vec![
        Leg { client_node: b, link: phys, nodes: vec![a, b], links: vec![phys] },
        Leg {
            client_node: c,
            link: Uuid::from_u128(3),
            nodes: vec![a, b, c],
            links: vec![phys, Uuid::from_u128(4)],
        },
    ];
    let entries = desired_entries(&app(legs, vec![("sae-b", B), ("sae-b2", B), ("sae-c", C)]));
    let apps: Vec<&Entry> = entries.iter().filter(|e| e.kind == EntryKind::App).collect();
    assert_eq!(apps.len(), 5, "two server entries, three client entries");
    assert_eq!(json!(apps[0].body)["client_app_id"], json!(["sae-b", "sae-b2"]));
    assert_eq!(json!(apps[0].body)["backing_qkdl_id"], json!([phys.to_string()]));
    let ids: BTreeSet<Uuid> = apps.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 5, "distinct ids: {ids:?}");
    assert_eq!(entries.iter().filter(|e| e.kind == EntryKind::Link).count(), 3);
}
