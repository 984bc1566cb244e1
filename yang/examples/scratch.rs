use qkdn_yang::datastore::{ContentFilter, Datastore};
use qkdn_yang::schema::NodeKind;
use qkdn_yang::{DataPath, YangContext};
use serde_json::json;

#[tokio::main]
async fn main() {
    let ctx = YangContext::qkdn().unwrap();
    let s = ctx.schema();
    for i in 0..s.len() {
        let d = s.node(qkdn_yang::SchemaId::ROOT);
        let _ = d;
        let _ = i;
    }
    // print unit lists
    let root = s.root();
    fn walk(s: &qkdn_yang::Schema, id: qkdn_yang::SchemaId, depth: usize) {
        let d = s.node(id);
        if d.kind == NodeKind::List { println!("{}list {} unit={} config={}", " ".repeat(depth), s.schema_path(id), d.unit, d.config); }
        for c in &d.children { walk(s, *c, depth+1); }
    }
    for c in &root.children { walk(s, *c, 0); }
    let ds = Datastore::builder(ctx.clone()).config(json!({"qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000",
        "qkd_interfaces": {"qkd_interface": [{"qkdi_id": "100", "qkdi_att_point": {"device": "x", "port": "1"}}]}}})).build().unwrap();
    let snap = ds.snapshot();
    println!("{}", snap.get_json(&ctx, &DataPath::root(), ContentFilter::Config).unwrap());
    let r = ds.put_config("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=11111111-0000-0000-0000-00000000000A",
       json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "11111111-0000-0000-0000-00000000000a", "qkdl_type": "etsi-qkd-node-types:PHYS", "phys_wavelength": "20"}]})).await;
    println!("put: {:?}", r.map(|c| c.changes.changes.iter().map(|c| (c.op, c.path.to_instance_identifier(ctx.schema()))).collect::<Vec<_>>()));
    let r = ds.put_config("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=22222222-0000-0000-0000-00000000000A",
       json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "22222222-0000-0000-0000-00000000000a", "qkdl_type": "etsi-qkd-node-types:VIRT", "phys_wavelength": "20"}]})).await;
    println!("bad put: {:?}", r.err());
    let r = ds.merge_config("/etsi-qkd-sdn-node:qkd_node", json!({"etsi-qkd-sdn-node:qkd_node": {"qkdn_version": "1.0", "bogus": 1}})).await;
    println!("bad merge: {:?}", r.err());
    let r = ds.set_state("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=11111111-0000-0000-0000-00000000000a/qkdl_performance",
        json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": 1000, "eskr": 900, "phys_perf": [{"perf_type": "etsi-qkd-node-types:QBER", "value": "0.02"}]}})).await;
    println!("state: {:?}", r.map(|c| c.changes.changes.len()));
    let snap = ds.snapshot();
    println!("{}", snap.get_json(&ctx, &DataPath::root(), ContentFilter::All).unwrap());
    // change type to VIRT: state phys_perf should be dropped
    let r = ds.merge_config("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=11111111-0000-0000-0000-00000000000a",
       json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "11111111-0000-0000-0000-00000000000a", "qkdl_type": "etsi-qkd-node-types:VIRT"}]})).await;
    println!("virt: {:?}", r.as_ref().err());
    let snap = ds.snapshot();
    println!("{}", snap.get_json(&ctx, &DataPath::root(), ContentFilter::All).unwrap());
}
