//! The network view from node reports: matching, half-configured and contradictory links, and
//! what makes a link down.

use serde_json::json;

use super::*;

const A: &str = "00000001-0000-0000-0000-000000000000";
const B: &str = "00000002-0000-0000-0000-000000000000";
const L: &str = "00000001-0002-0000-0000-000000000000";

fn node(id: &str, links: serde_json::Value) -> NodeReport {
    NodeReport::parse(&json!({"qkd_node": {"qkdn_id": id, "qkd_links": {"qkd_link": links}}}))
        .unwrap()
}

fn phys(local: (&str, u32), remote: (&str, u32), skr: u64, qber: &str) -> serde_json::Value {
    json!({"qkdl_id": L, "qkdl_type": "etsi-qkd-node-types:PHYS", "qkdl_status": "etsi-qkd-node-types:ACTIVE",
        "qkdl_local": {"qkdn_id": local.0, "qkdi_id": local.1}, "qkdl_remote": {"qkdn_id": remote.0, "qkdi_id": remote.1},
        "qkdl_performance": {"skr": skr, "eskr": skr, "expected_consumption": 0,
            "phys_perf": [{"perf_type": "etsi-qkd-node-types:QBER", "value": qber}]}})
}

fn build(reports: &[NodeReport], reachable: bool) -> Network {
    Network::build(reports.iter().map(|report| Source { report, reachable }), 0.11)
}

#[test]
fn a_link_both_ends_report_is_matched_with_the_smaller_rate() {
    let a = node(A, json!([phys((A, 1), (B, 2), 1000, "0.02")]));
    let b = node(B, json!([phys((B, 2), (A, 1), 800, "0.05")]));
    let net = build(&[a, b], true);
    assert!(net.problems.is_empty(), "{:?}", net.problems);
    let l = &net.links[&L.parse().unwrap()];
    assert!(l.up, "{:?}", l.down_reasons);
    assert_eq!((l.skr_bps, l.qber), (800, Some(0.05)));
    assert_eq!(l.ends, [(A.parse().unwrap(), Some(1)), (B.parse().unwrap(), Some(2))]);
}

#[test]
fn one_sided_and_contradictory_links_are_reported_not_used() {
    let a = node(A, json!([phys((A, 1), (B, 2), 1000, "0.02")]));
    let half = build(&[a.clone(), node(B, json!([]))], true);
    assert!(half.links.is_empty());
    assert!(half.problems[0].problem.contains("half-configured"), "{:?}", half.problems);
    let wrong_iface = node(B, json!([phys((B, 7), (A, 1), 1000, "0.02")]));
    let net = build(&[a, wrong_iface], true);
    assert!(net.links.is_empty());
    assert!(net.problems[0].problem.contains("interface 2"), "{:?}", net.problems);
}

#[test]
fn high_qber_unreachable_agents_and_passive_ends_take_a_link_down() {
    let a = node(A, json!([phys((A, 1), (B, 2), 1000, "0.20")]));
    let b = node(B, json!([phys((B, 2), (A, 1), 800, "0.05")]));
    let net = build(&[a.clone(), b.clone()], true);
    let l = &net.links[&L.parse().unwrap()];
    assert!(!l.up && l.down_reasons[0].contains("QBER 0.200"), "{:?}", l.down_reasons);
    let ok = node(A, json!([phys((A, 1), (B, 2), 1000, "0.01")]));
    let net = build(&[ok.clone(), b.clone()], false);
    assert!(net.links[&L.parse().unwrap()].down_reasons[0].contains("not reachable"));
    let mut passive = phys((B, 2), (A, 1), 800, "0.01");
    passive["qkdl_status"] = json!("etsi-qkd-node-types:PASSIVE");
    let net = build(&[ok, node(B, json!([passive]))], true);
    assert!(net.links[&L.parse().unwrap()].down_reasons[0].contains("PASSIVE"));
}
