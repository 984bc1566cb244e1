//! Property tests: rendering and reloading is a fixpoint and loses nothing, and random edit
//! sequences leave the datastore valid or are refused whole.

use proptest::prelude::*;
use qkdn_yang::datastore::{ContentFilter, Datastore, Edit, EditOp};
use qkdn_yang::input::InputPolicy;
use qkdn_yang::ly::{Content, validate_data};
use qkdn_yang::{DataPath, YangContext};
use serde_json::{Value as Json, json};

use super::harness::fingerprint;

const NODE: &str = "00000001-0000-0000-0000-000000000000";

fn uuid(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-{:012x}", u64::from(n) * 7919)
}

/// A canonical decimal64 with three fraction digits, from thousandths.
fn decimal(thousandths: u32) -> String {
    let whole = thousandths / 1000;
    let frac = format!("{:03}", thousandths % 1000);
    let frac = frac.trim_end_matches('0');
    format!("{whole}.{}", if frac.is_empty() { "0" } else { frac })
}

fn interface() -> impl Strategy<Value = Json> {
    (1u32..500, prop::option::of("[a-z]{1,8}"), prop::option::of(0u32..70000), prop::bool::ANY).prop_map(
        |(id, model, port, cv)| {
            let mut i = json!({"qkdi_id": id, "qkdi_type": if cv { "etsi-qkd-node-types:CV-QKD" } else { "etsi-qkd-node-types:DV-QKD" }});
            if let Some(m) = model {
                i["qkdi_model"] = json!(m);
            }
            if let Some(p) = port {
                i["qkdi_att_point"] = json!({"device": "oxc", "port": p});
            }
            i
        },
    )
}

fn link() -> impl Strategy<Value = Json> {
    (
        0u32..64,
        prop::bool::ANY,
        1u32..9999,
        0u32..40000,
        0u32..1_000_000,
        prop::collection::vec(0u32..64, 0..3),
        prop::option::of(prop::bool::ANY),
    )
        .prop_map(|(id, phys, wl, att, bw, hops, enable)| {
            let mut l = json!({"qkdl_id": uuid(id), "qkdl_local": {"qkdn_id": NODE}});
            if phys {
                l["qkdl_type"] = json!("etsi-qkd-node-types:PHYS");
                l["phys_wavelength"] = json!(wl.to_string());
                l["phys_channel_att"] = json!(decimal(att));
            } else {
                l["qkdl_type"] = json!("etsi-qkd-node-types:VIRT");
                l["virt_bandwidth"] = json!(bw);
                let mut next: Vec<String> = hops.into_iter().map(uuid).collect();
                next.sort();
                next.dedup();
                if !next.is_empty() {
                    l["virt_next_hop"] = json!(next);
                }
            }
            if let Some(e) = enable {
                l["qkdl_enable"] = json!(e);
            }
            l
        })
}

fn app() -> impl Strategy<Value = Json> {
    (100u32..164, prop::collection::vec("[a-z]{1,6}", 0..3), prop::option::of(0u32..1_000_000), 0u32..100)
        .prop_map(|(id, clients, ttl, prio)| {
            let mut clients: Vec<String> = clients.into_iter().map(|c| format!("sae://{c}")).collect();
            clients.sort();
            clients.dedup();
            let mut a = json!({"app_id": uuid(id), "app_type": "etsi-qkd-node-types:CLIENT", "app_priority": prio, "server_app_id": "sae://server"});
            if !clients.is_empty() {
                a["client_app_id"] = json!(clients);
            }
            if let Some(t) = ttl {
                a["app_qos"] = json!({"ttl": t, "max_bandwidth": t / 2});
            }
            a
        })
}

/// Entries with distinct keys.
fn unique_by(entries: Vec<Json>, key: &str) -> Vec<Json> {
    let mut seen = std::collections::HashSet::new();
    entries.into_iter().filter(|e| seen.insert(e[key].to_string())).collect()
}

fn node() -> impl Strategy<Value = Json> {
    (
        prop::collection::vec(interface(), 0..5),
        prop::collection::vec(link(), 0..8),
        prop::collection::vec(app(), 0..4),
        prop::option::of("[a-zA-Z0-9 .-]{0,12}"),
    )
        .prop_map(|(ifaces, links, apps, version)| {
            let mut node = json!({"qkdn_id": NODE});
            if let Some(v) = version {
                node["qkdn_version"] = json!(v);
            }
            let ifaces = unique_by(ifaces, "qkdi_id");
            if !ifaces.is_empty() {
                node["qkd_interfaces"] = json!({"qkd_interface": ifaces});
            }
            let links = unique_by(links, "qkdl_id");
            if !links.is_empty() {
                node["qkd_links"] = json!({"qkd_link": links});
            }
            let apps = unique_by(apps, "app_id");
            if !apps.is_empty() {
                node["qkd_applications"] = json!({"qkd_app": apps});
            }
            json!({"etsi-qkd-sdn-node:qkd_node": node})
        })
}

/// JSON with every array sorted, so that list order does not matter in comparisons.
fn sorted(v: &Json) -> Json {
    match v {
        Json::Array(items) => {
            let mut items: Vec<Json> = items.iter().map(sorted).collect();
            items.sort_by_key(|i| i.to_string());
            Json::Array(items)
        }
        Json::Object(map) => {
            Json::Object(map.iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
        }
        other => other.clone(),
    }
}

fn config_of(ds: &Datastore) -> Json {
    let snap = ds.snapshot();
    let root = snap.get_json(ds.context(), &DataPath::root(), ContentFilter::Config).unwrap();
    root["ietf-restconf:data"].clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Loading a valid document and rendering it gives the same data back, and rendering is a
    /// fixpoint of load-then-render.
    #[test]
    fn render_of_load_round_trips(doc in node()) {
        let ctx = YangContext::qkdn().unwrap();
        validate_data(&ctx, &doc.to_string(), Content::Config).unwrap();
        let ds = Datastore::builder(ctx.clone()).config(doc.clone()).build().unwrap();
        let printed = config_of(&ds);
        prop_assert_eq!(sorted(&printed), sorted(&doc));
        let again = Datastore::builder(ctx).config(printed.clone()).build().unwrap();
        prop_assert_eq!(config_of(&again).to_string(), printed.to_string());
    }

    /// Any sequence of edits, valid or not, leaves a datastore that libyang validates as a
    /// whole; a refused edit changes nothing at all.
    #[test]
    fn random_edits_keep_the_datastore_valid(doc in node(), edits in prop::collection::vec(edit(), 1..16)) {
        let ctx = YangContext::qkdn().unwrap();
        let ds = Datastore::builder(ctx.clone()).config(doc).build().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (op, path, body) in edits {
            let before = fingerprint(&ds);
            let result = DataPath::parse_restconf(&ctx, &path).and_then(|p| {
                let edit = match op {
                    EditOp::Delete | EditOp::Remove => Edit::delete(p),
                    _ => Edit::prepare(&ctx, op, &p, body, InputPolicy::CONFIG)?,
                };
                runtime.block_on(ds.apply(edit))
            });
            match result {
                Ok(_) => {
                    let config = config_of(&ds);
                    if let Err(e) = validate_data(&ctx, &config.to_string(), Content::Config) {
                        prop_assert!(false, "after {op:?} {path}: invalid datastore: {e:?}");
                    }
                }
                Err(_) => prop_assert_eq!(fingerprint(&ds), before),
            }
        }
    }
}

fn edit() -> impl Strategy<Value = (EditOp, String, Option<Json>)> {
    let links = "/etsi-qkd-sdn-node:qkd_node/qkd_links";
    prop_oneof![
        // Create a link, sometimes with a deliberate fault.
        (link(), 0u8..6).prop_map(move |(mut l, fault)| {
            match fault {
                0 => l["virt_bandwidth"] = json!(1),
                1 => l["phys_wavelength"] = json!("0"),
                2 => l["colour"] = json!("red"),
                _ => {}
            }
            (EditOp::Create, links.to_owned(), Some(json!({"etsi-qkd-sdn-node:qkd_link": [l]})))
        }),
        // Merge a leaf into a link that may or may not exist.
        (0u32..64, prop_oneof![Just(json!({"qkdl_enable": false})), Just(json!({"phys_wavelength": "12"})), Just(json!({"virt_bandwidth": 7})), Just(json!({"qkdl_type": "etsi-qkd-node-types:PHYS"}))])
            .prop_map(move |(id, mut leaf)| {
                leaf["qkdl_id"] = json!(uuid(id));
                (EditOp::Merge, format!("{links}/qkd_link={}", uuid(id)), Some(json!({"etsi-qkd-sdn-node:qkd_link": [leaf]})))
            }),
        // Replace a link wholesale.
        link().prop_map(move |l| {
            let id = l["qkdl_id"].as_str().unwrap().to_owned();
            (EditOp::Replace, format!("{links}/qkd_link={id}"), Some(json!({"etsi-qkd-sdn-node:qkd_link": [l]})))
        }),
        // Delete a link that may or may not exist.
        (0u32..64).prop_map(move |id| (EditOp::Delete, format!("{links}/qkd_link={}", uuid(id)), None)),
        // Replace an interface, with a port that may be out of range.
        (1u32..500, prop_oneof![Just(json!(5)), Just(json!(4294967296u64)), Just(json!("x"))]).prop_map(|(id, port)| {
            (EditOp::Replace, format!("/etsi-qkd-sdn-node:qkd_node/qkd_interfaces/qkd_interface={id}"),
             Some(json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": id, "qkdi_att_point": {"port": port}}]})))
        }),
        // Change a node leaf, or try to remove the mandatory node id.
        prop_oneof![
            Just((EditOp::Merge, "/etsi-qkd-sdn-node:qkd_node".to_owned(), Some(json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_version": "v2"}})))),
            Just((EditOp::Delete, "/etsi-qkd-sdn-node:qkd_node/qkdn_id".to_owned(), None)),
        ],
    ]
}
