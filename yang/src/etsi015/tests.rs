//! Typed entries as libyang sees them, and as third-party agents write them.

use serde_json::json;

use super::*;
use crate::YangContext;
use crate::ly::{Content, validate_data};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A node holding one entry of every kind qkdn writes, every leaf set.
fn node_document() -> Json {
    let interface = QkdInterface {
        qkdi_id: 1,
        qkdi_model: Some("simulated".into()),
        qkdi_type: Some("etsi-qkd-node-types:DV-QKD".into()),
        qkdi_att_point: Some(AttachmentPoint { device: Some("dev0".into()), port: Some(7) }),
    };
    let phys = QkdLink {
        qkdl_id: id(10),
        qkdl_enable: Some(true),
        qkdl_local: Some(LinkEnd { qkdn_id: Some(id(1)), qkdi_id: Some(1) }),
        qkdl_remote: Some(LinkEnd { qkdn_id: Some(id(2)), qkdi_id: Some(2) }),
        qkdl_type: Some(LinkType::Phys),
        phys_channel_att: Some("3.5".into()),
        ..QkdLink::default()
    };
    let virt = QkdLink {
        qkdl_id: id(11),
        qkdl_local: Some(LinkEnd { qkdn_id: Some(id(1)), qkdi_id: None }),
        qkdl_remote: Some(LinkEnd { qkdn_id: Some(id(3)), qkdi_id: None }),
        qkdl_type: Some(LinkType::Virt),
        virt_next_hop: vec![id(2)],
        virt_bandwidth: Some(2_000),
        ..QkdLink::default()
    };
    let app = QkdApp {
        app_id: id(20),
        app_type: Some(AppType::Client),
        server_app_id: Some("sae-a".into()),
        client_app_id: vec!["sae-c".into()],
        app_priority: Some(3),
        expiration_time: Some("2030-01-01T00:00:00Z".into()),
        app_qos: Some(AppQos {
            max_bandwidth: Some(4_000),
            min_bandwidth: Some(2_000),
            jitter: Some(10),
            ttl: Some(60),
            clients_shared_path_enable: Some(false),
            clients_shared_keys_required: Some(true),
        }),
        backing_qkdl_id: vec![id(11)],
        local_qkdn_id: Some(id(1)),
        remote_qkdn_id: Some(id(3)),
    };
    json!({"etsi-qkd-sdn-node:qkd_node": {
        "qkdn_id": id(1).to_string(),
        "qkd_interfaces": {"qkd_interface": [interface]},
        "qkd_links": {"qkd_link": [phys, virt]},
        "qkd_applications": {"qkd_app": [app]},
    }})
}

#[test]
fn entries_as_written_pass_libyang_and_read_back_the_same() {
    let ctx = YangContext::node_agent().unwrap();
    let doc = node_document();
    validate_data(&ctx, &doc.to_string(), Content::Config)
        .unwrap_or_else(|e| panic!("libyang refused the typed entries: {e:?}\n{doc:#}"));
    let links = entries(&doc, "qkd_links", "qkd_link", QkdLink::read);
    let apps = entries(&doc, "qkd_applications", "qkd_app", QkdApp::read);
    let interfaces = entries(&doc, "qkd_interfaces", "qkd_interface", QkdInterface::read);
    let node = &doc["etsi-qkd-sdn-node:qkd_node"];
    assert_eq!(json!(links), node["qkd_links"]["qkd_link"]);
    assert_eq!(json!(apps), node["qkd_applications"]["qkd_app"]);
    assert_eq!(json!(interfaces), node["qkd_interfaces"]["qkd_interface"]);
    assert_eq!(links[1].qkdl_type, Some(LinkType::Virt));
    assert_eq!(apps[0].qos().ttl, Some(60));
}

#[test]
fn a_wrong_typed_member_is_refused_by_libyang() {
    // The check above could not fail if libyang accepted anything.
    let ctx = YangContext::node_agent().unwrap();
    let mut doc = node_document();
    doc["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"][0]["app_qos"]["ttl"] =
        json!("sixty");
    assert!(validate_data(&ctx, &doc.to_string(), Content::Config).is_err());
}

#[test]
fn third_party_entries_read_tolerantly() {
    let link = json!({
        "qkdl_id": id(5).to_string(), "qkdl_type": "VIRT", "virt_bandwidth": "1500",
        "virt_next_hop": [id(6).to_string(), 17], "qkdl_local": {"qkdn_id": "not a uuid"},
        "vendor:extra": {"anything": true}, "qkdl_enable": "false",
    });
    let read = QkdLink::read(&link).unwrap();
    assert_eq!(read.qkdl_type, Some(LinkType::Virt));
    assert_eq!(read.virt_bandwidth, Some(1500));
    assert_eq!(read.virt_next_hop, Vec::<Uuid>::new(), "a list with a bad item reads as absent");
    assert_eq!(read.qkdl_local, Some(LinkEnd::default()));
    assert!(!read.enabled());
    let app = json!({"app_id": id(7).to_string(), "app_type": "etsi-qkd-node-types:client",
        "app_qos": {"min_bandwidth": 100, "ttl": true}, "client_app_id": ["x"]});
    let read = QkdApp::read(&app).unwrap();
    assert_eq!(read.app_type, Some(AppType::Client));
    assert_eq!((read.qos().min_bandwidth, read.qos().ttl), (Some(100), None));
    assert!(QkdApp::read(&json!({"app_id": 7})).is_none(), "no readable key, no entry");
    let prefixed = json!({"etsi-qkd-sdn-node:app_id": id(8).to_string(),
        "etsi-qkd-sdn-node:app_qos": {"etsi-qkd-sdn-node:ttl": 5}});
    assert_eq!(QkdApp::read(&prefixed).unwrap().qos().ttl, Some(5));
    let nested_only = json!({"app_id": id(8).to_string(), "app_qos": {"etsi-qkd-sdn-node:ttl": 7}});
    assert_eq!(QkdApp::read(&nested_only).unwrap().qos().ttl, Some(7));
    assert!(QkdInterface::read(&json!({"qkdi_id": "x"})).is_none());
}
