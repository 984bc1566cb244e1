//! The datastore through its API: validation units, owner hooks, change subscriptions, state,
//! concurrency and snapshot isolation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use qkdn_yang::datastore::{ContentFilter, Datastore, Layer, Transaction};
use qkdn_yang::restconf::RestconfOptions;
use qkdn_yang::schema::NodeKind;
use qkdn_yang::tree::diff::ChangeOp;
use qkdn_yang::{DataError, DataPath, YangContext};
use serde_json::{Value as Json, json};

use super::harness::{TestServer, example_node, fingerprint};

const LINKS: &str = "/etsi-qkd-sdn-node:qkd_node/qkd_links";

fn link(id: &str, kind: &str) -> Json {
    json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": id, "qkdl_type": format!("etsi-qkd-node-types:{kind}")}]})
}

fn example_datastore() -> Datastore {
    Datastore::builder(YangContext::qkdn().unwrap()).data(example_node()).build().unwrap()
}

#[test]
fn the_015_lists_are_validation_units() {
    let ctx = YangContext::qkdn().unwrap();
    let schema = ctx.schema();
    let mut units = Vec::new();
    let mut not_units = Vec::new();
    for (name, id) in [("qkd_node", schema.top_level_by_bare_name("qkd_node")[0])] {
        let mut stack = vec![id];
        while let Some(n) = stack.pop() {
            let def = schema.node(n);
            if def.kind == NodeKind::List {
                if def.unit {
                    units.push(def.name.clone())
                } else {
                    not_units.push(def.name.clone())
                }
            }
            stack.extend(def.children.iter().copied());
        }
        let _ = name;
    }
    units.sort();
    assert_eq!(units, ["qkd_app", "qkd_interface", "qkd_link", "statistics"]);
    // phys_perf's `when` reads qkdl_type, outside the phys_perf entry.
    assert_eq!(not_units, ["phys_perf"]);
    // The ETSI 018 trees are all state: their lists are validated with their tree (a state
    // list is a unit only below a configuration list entry, like `statistics` above).
    for top in ["qkd_network", "qkd_applications"] {
        for id in schema.top_level_by_bare_name(top) {
            let mut stack = vec![*id];
            while let Some(n) = stack.pop() {
                let def = schema.node(n);
                if def.kind == NodeKind::List && !def.config {
                    assert!(!def.unit, "{} is a unit", def.name);
                }
                stack.extend(def.children.iter().copied());
            }
        }
    }
}

#[tokio::test]
async fn a_hook_refusal_changes_nothing_and_reaches_the_client() {
    // The hook checks meaning beyond the schema: a link's local interface must exist.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let hook = move |tx: &Transaction<'_>| -> Result<(), DataError> {
        seen.fetch_add(1, Ordering::SeqCst);
        let interfaces =
            DataPath::parse_restconf(tx.context(), "/etsi-qkd-sdn-node:qkd_node/qkd_interfaces")
                .unwrap();
        let ifaces = tx.candidate_json(&interfaces).unwrap_or(json!({}));
        let known: Vec<u64> = ifaces["etsi-qkd-sdn-node:qkd_interfaces"]["qkd_interface"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["qkdi_id"].as_u64())
            .collect();
        for change in tx.changes() {
            if let Some(new) =
                qkdn_yang::datastore::change_content_json(tx.context(), change, change.new.as_ref())
            {
                let entry = &new["etsi-qkd-sdn-node:qkd_link"][0];
                if let Some(i) = entry["qkdl_local"]["qkdi_id"].as_u64()
                    && !known.contains(&i)
                {
                    return Err(DataError::invalid_value(format!(
                        "interface {i} does not exist on this node"
                    ))
                    .at(change.path.to_instance_identifier(tx.context().schema())));
                }
            }
        }
        Ok(())
    };
    let ds = Datastore::builder(YangContext::qkdn().unwrap())
        .data(example_node())
        .hook(hook)
        .build()
        .unwrap();
    let server = TestServer::serve_datastore(ds.clone(), RestconfOptions::default(), |b| b).await;
    let before = fingerprint(&ds);
    let bad = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "44444444-0000-0000-0000-000000000000",
        "qkdl_type": "etsi-qkd-node-types:PHYS", "qkdl_local": {"qkdi_id": 999}}]});
    let response = server
        .http()
        .post(server.url(&format!("/restconf/data{LINKS}")))
        .header("content-type", "application/yang-data+json")
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Json = response.json().await.unwrap();
    assert_eq!(
        body["ietf-restconf:errors"]["error"][0]["error-message"],
        "interface 999 does not exist on this node"
    );
    assert_eq!(fingerprint(&ds), before, "a refused change must leave no trace");
    let good = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "44444444-0000-0000-0000-000000000000",
        "qkdl_type": "etsi-qkd-node-types:PHYS", "qkdl_local": {"qkdi_id": 102}}]});
    let path = ds.path(LINKS).unwrap();
    let edit = qkdn_yang::datastore::Edit::prepare(
        ds.context(),
        qkdn_yang::datastore::EditOp::Create,
        &path,
        Some(good),
        qkdn_yang::input::InputPolicy::CONFIG,
    )
    .unwrap();
    ds.apply(edit).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn subscribers_see_each_committed_change_once() {
    let ds = example_datastore();
    let mut changes = ds.subscribe();
    let id = "44444444-0000-0000-0000-000000000000";
    let link_path = format!("{LINKS}/qkd_link={id}");
    ds.put_config(&link_path, link(id, "PHYS")).await.unwrap();
    // Refused: VIRT leaf on a PHYS link. Nothing is published.
    let bad = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": id, "virt_bandwidth": 1}]});
    assert!(ds.merge_config(&link_path, bad).await.is_err());
    // No-op: same content again; no version, no change set.
    let version = ds.snapshot().running_version();
    let commit = ds.put_config(&link_path, link(id, "PHYS")).await.unwrap();
    assert!(commit.changes.is_empty());
    assert_eq!(ds.snapshot().running_version(), version);
    ds.merge_config(
        &link_path,
        json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": id, "phys_wavelength": "7"}]}),
    )
    .await
    .unwrap();
    ds.remove_config(&link_path).await.unwrap();

    let schema = ds.context().schema();
    let first = changes.recv().await.unwrap();
    assert_eq!(first.layer, Layer::Running);
    assert_eq!(first.changes.len(), 1);
    assert_eq!(first.changes[0].op, ChangeOp::Created);
    assert_eq!(
        first.changes[0].path.to_instance_identifier(schema),
        format!("/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link[qkdl_id='{id}']")
    );
    let second = changes.recv().await.unwrap();
    assert_eq!(second.changes.len(), 1);
    assert_eq!(second.changes[0].op, ChangeOp::Created);
    assert!(second.changes[0].path.to_instance_identifier(schema).ends_with("/phys_wavelength"));
    let third = changes.recv().await.unwrap();
    assert_eq!(third.changes[0].op, ChangeOp::Deleted);
    assert!(third.version > second.version && second.version > first.version);
    assert!(changes.try_recv().is_err(), "no other change set was published");
}

#[tokio::test]
async fn state_is_validated_and_follows_its_configuration() {
    let ds = example_datastore();
    let phys = "11111111-0000-0000-0000-000000000000";
    let perf = format!("{LINKS}/qkd_link={phys}/qkdl_performance");
    ds.merge_state(&perf, json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": 5, "eskr": 4}}))
        .await
        .unwrap();
    let snap = ds.snapshot();
    let got =
        snap.get_json(ds.context(), &ds.path(&perf).unwrap(), ContentFilter::NonConfig).unwrap();
    assert_eq!(got["etsi-qkd-sdn-node:qkdl_performance"]["skr"], 5);
    // State must respect the schema too.
    let err = ds
        .merge_state(&perf, json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": "fast"}}))
        .await
        .unwrap_err();
    assert!(err.message.contains("uint32"), "{err:?}");
    // State needs the configured entry it hangs under.
    let err = ds
        .merge_state(
            &format!("{LINKS}/qkd_link=99999999-0000-0000-0000-000000000000/qkdl_performance"),
            json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": 1}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 404);
    // Turning the PHYS link into a VIRT one makes its phys_perf state invalid: it is dropped.
    ds.put_config(&format!("{LINKS}/qkd_link={phys}"), link(phys, "VIRT")).await.unwrap();
    let snap = ds.snapshot();
    let link_path = ds.path(&format!("{LINKS}/qkd_link={phys}")).unwrap();
    assert!(snap.get_json(ds.context(), &link_path, ContentFilter::NonConfig).is_none());
    let all = snap.get_json(ds.context(), &link_path, ContentFilter::All).unwrap();
    assert!(all["etsi-qkd-sdn-node:qkd_link"][0].get("qkdl_performance").is_none(), "{all}");
    assert_eq!(all["etsi-qkd-sdn-node:qkd_link"][0]["qkdl_type"], "etsi-qkd-node-types:VIRT");
    // Deleting a link deletes its state.
    let virt = "33333333-0000-0000-0000-000000000000";
    let virt_path = ds.path(&format!("{LINKS}/qkd_link={virt}")).unwrap();
    let schema = ds.context().schema();
    assert!(qkdn_yang::tree::render::exists(
        schema,
        ds.snapshot().layers(ContentFilter::NonConfig),
        &virt_path
    ));
    ds.remove_config(&format!("{LINKS}/qkd_link={virt}")).await.unwrap();
    assert!(!qkdn_yang::tree::render::exists(
        schema,
        ds.snapshot().layers(ContentFilter::All),
        &virt_path
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_each_get_a_consistent_commit() {
    let ds = example_datastore();
    let start = ds.snapshot().running_version();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let ds = ds.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40u32 {
                let id = format!("{t:08x}-{i:04x}-0000-0000-000000000000");
                ds.put_config(
                    &format!("{LINKS}/qkd_link={id}"),
                    link(&id, if i % 2 == 0 { "PHYS" } else { "VIRT" }),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let snap = ds.snapshot();
    assert_eq!(snap.running_version(), start + 320);
    let links =
        snap.get_json(ds.context(), &ds.path(LINKS).unwrap(), ContentFilter::Config).unwrap();
    assert_eq!(links["etsi-qkd-sdn-node:qkd_links"]["qkd_link"].as_array().unwrap().len(), 322);
    // The whole result validates as one document.
    let doc = snap.get_json(ds.context(), &DataPath::root(), ContentFilter::Config).unwrap();
    qkdn_yang::ly::validate_data(
        ds.context(),
        &doc["ietf-restconf:data"].to_string(),
        qkdn_yang::ly::Content::Config,
    )
    .unwrap();
}

#[tokio::test]
async fn an_old_snapshot_keeps_its_content() {
    let ds = example_datastore();
    let old = ds.snapshot();
    let id = "44444444-0000-0000-0000-000000000000";
    ds.put_config(&format!("{LINKS}/qkd_link={id}"), link(id, "PHYS")).await.unwrap();
    ds.put_config(
        "/etsi-qkd-sdn-node:qkd_node/qkdn_version",
        json!({"etsi-qkd-sdn-node:qkdn_version": "9"}),
    )
    .await
    .unwrap();
    let path = ds.path(&format!("{LINKS}/qkd_link={id}")).unwrap();
    assert!(old.get_json(ds.context(), &path, ContentFilter::All).is_none());
    let version = ds.path("/etsi-qkd-sdn-node:qkd_node/qkdn_version").unwrap();
    assert_eq!(
        old.get_json(ds.context(), &version, ContentFilter::All).unwrap()["etsi-qkd-sdn-node:qkdn_version"],
        "qkdn-example-1"
    );
    assert!(ds.snapshot().get_json(ds.context(), &path, ContentFilter::All).is_some());
}

#[tokio::test]
async fn entity_tags_change_only_with_their_resource() {
    let server = TestServer::start(example_node()).await;
    let http = server.http();
    let etag = |path: String| {
        let http = http.clone();
        let url = server.url(&format!("/restconf/data{path}"));
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["etag"].to_str().unwrap().to_owned()
        }
    };
    let a = format!("{LINKS}/qkd_link=11111111-0000-0000-0000-000000000000");
    let b = format!("{LINKS}/qkd_link=33333333-0000-0000-0000-000000000000");
    let (a1, b1, node1) = (
        etag(a.clone()).await,
        etag(b.clone()).await,
        etag("/etsi-qkd-sdn-node:qkd_node".into()).await,
    );
    server
        .ds
        .merge_config(&a, json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "11111111-0000-0000-0000-000000000000", "qkdl_enable": false}]}))
        .await
        .unwrap();
    let (a2, b2, node2) = (
        etag(a.clone()).await,
        etag(b.clone()).await,
        etag("/etsi-qkd-sdn-node:qkd_node".into()).await,
    );
    assert_ne!(a1, a2, "the changed link has a new tag");
    assert_ne!(node1, node2, "so has its ancestor");
    assert_eq!(b1, b2, "the other link keeps its tag");
    // State changes change the tag of representations with state, not their configuration part.
    server
        .ds
        .merge_state(
            &format!("{a}/qkdl_performance"),
            json!({"etsi-qkd-sdn-node:qkdl_performance": {"skr": 1}}),
        )
        .await
        .unwrap();
    let a3 = etag(a.clone()).await;
    assert_ne!(a2, a3);
    let response = http
        .patch(server.url(&format!("/restconf/data{a}")))
        .header("content-type", "application/yang-data+json")
        .header("if-match", &a2)
        .body(json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "11111111-0000-0000-0000-000000000000", "qkdl_enable": true}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "If-Match compares the configuration part");
}

#[tokio::test]
async fn a_panicking_hook_refuses_the_edit_and_the_datastore_lives_on() {
    let hook =
        |tx: &Transaction<'_>| -> Result<(), DataError> {
            if tx.changes().iter().any(|c| {
                c.path.to_instance_identifier(tx.context().schema()).ends_with("qkdn_version")
            }) {
                panic!("hook bug");
            }
            Ok(())
        };
    let ds = Datastore::builder(YangContext::qkdn().unwrap())
        .data(example_node())
        .hook(hook)
        .build()
        .unwrap();
    let before = fingerprint(&ds);
    let err = ds
        .put_config(
            "/etsi-qkd-sdn-node:qkd_node/qkdn_version",
            json!({"etsi-qkd-sdn-node:qkdn_version": "x"}),
        )
        .await
        .unwrap_err();
    assert!(err.message.contains("hook bug"), "{err:?}");
    assert_eq!(fingerprint(&ds), before);
    // The owner thread survived: other edits go through.
    ds.put_config(
        "/etsi-qkd-sdn-node:qkd_node/qkdn_location_id",
        json!({"etsi-qkd-sdn-node:qkdn_location_id": "y"}),
    )
    .await
    .unwrap();
}
