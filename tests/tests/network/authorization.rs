//! The authorization matrix over real processes and real TLS: every kind of identity (the node
//! itself, another node, the SAE of a pair, an SAE of another pair, operator admin and viewer,
//! the node's controller and another domain's, an orchestrator, a certificate of the CA naming
//! no identity, a certificate of another CA, no certificate) calls every read and write
//! endpoint of every service (agent RESTCONF, agent API, ETSI 014, SKIP, KMS peer service, controller
//! REST and 018 RESTCONF, orchestrator REST and RESTCONF). Each cell expects its answer from
//! SECURITY.md's table; each refusal is in the interface's own format; every refused write is
//! read back to show it changed nothing; the refusals are counted in `/metrics`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qkdn_kit::Role;
use qkdn_tests::network::{MAIN_DOMAIN, TestNetwork};
use qkdn_tests::pki::TestPki;
use qkdn_tests::process::{Process, binary};
use reqwest::Method;
use serde_json::{Value as Json, json};

const APP_X: &str = "a0000000-0000-4000-8000-0000000000a1";
const APP_Y: &str = "a0000000-0000-4000-8000-0000000000a2";
const APP_Z: &str = "a0000000-0000-4000-8000-0000000000a3";
const APP_Z2: &str = "a0000000-0000-4000-8000-0000000000a4";
/// A 015 application written straight to node A by an admin, for the RESTCONF write cells.
const DUMMY: &str = "d0000000-0000-4000-8000-0000000000d1";

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    NodeA,
    NodeC,
    SaeOfPair,
    SaeOther,
    Viewer,
    Controller,
    OtherController,
    Orchestrator,
    Unrecognised,
    OtherCa,
    NoCert,
    /// Last: its writes are destructive and restored after each.
    Admin,
}

const EVERYONE: [Who; 12] = [
    Who::NodeA,
    Who::NodeC,
    Who::SaeOfPair,
    Who::SaeOther,
    Who::Viewer,
    Who::Controller,
    Who::OtherController,
    Who::Orchestrator,
    Who::Unrecognised,
    Who::OtherCa,
    Who::NoCert,
    Who::Admin,
];

/// How an interface refuses.
#[derive(Clone, Copy, Debug)]
enum Format {
    Restconf,
    Problem,
    Etsi014,
}

/// What a cell expects.
#[derive(Debug)]
enum Expect {
    /// Served with this status.
    Status(u16),
    /// Refused by the policy, in the interface's format.
    Refused,
    /// No TLS session at all.
    NoTls,
}

struct Callers {
    files: Vec<(Who, Option<(PathBuf, PathBuf)>)>,
    ca: PathBuf,
}

impl Callers {
    fn client(&self, who: Who) -> reqwest::Client {
        let files = self.files(who);
        qkdn_tests::pki::https_client(
            &self.ca,
            files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
        )
    }

    fn files(&self, who: Who) -> Option<(PathBuf, PathBuf)> {
        self.files.iter().find(|(w, _)| *w == who).unwrap().1.clone()
    }
}

/// Sends a request; (status, body) or None when no TLS session was made.
async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    body: Option<&Json>,
) -> Option<(u16, Json, String)> {
    let mut request = client.request(method, url);
    if let Some(b) = body {
        request = request.header("content-type", "application/json").body(b.to_string());
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    Some((status, serde_json::from_str(&text).unwrap_or(Json::Null), content_type))
}

fn assert_refused(format: Format, what: &str, answer: &(u16, Json, String)) {
    let (status, body, content_type) = answer;
    match format {
        Format::Restconf => {
            assert_eq!(*status, 403, "{what}: {body}");
            assert_eq!(
                body["ietf-restconf:errors"]["error"][0]["error-tag"], "access-denied",
                "{what}: {body}"
            );
            assert!(content_type.contains("yang-data+json"), "{what}: {content_type}");
        }
        Format::Problem => {
            assert_eq!(*status, 403, "{what}: {body}");
            assert_eq!(body["status"], 403, "{what}: {body}");
            assert!(body["detail"].as_str().unwrap().contains("access denied"), "{what}: {body}");
            assert!(content_type.contains("problem+json"), "{what}: {content_type}");
        }
        Format::Etsi014 => {
            assert_eq!(*status, 401, "{what}: {body}");
            assert!(body["message"].is_string(), "{what}: {body}");
        }
    }
}

/// One endpoint of the matrix.
struct Endpoint {
    what: &'static str,
    method: Method,
    url: String,
    body: Option<Json>,
    format: Format,
    allowed: Vec<(Who, u16)>,
}

impl Endpoint {
    fn expect(&self, who: Who) -> Expect {
        if matches!(who, Who::OtherCa | Who::NoCert) {
            return Expect::NoTls;
        }
        match self.allowed.iter().find(|(w, _)| *w == who) {
            Some((_, status)) => Expect::Status(*status),
            None => Expect::Refused,
        }
    }
}

async fn wait_until<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_gets_exactly_what_the_policy_allows_on_every_interface() {
    let dir = qkdn_tests::process::test_dir();
    let mut net = TestNetwork::new(dir.path(), &["a", "b", "c"], &[("a", "b"), ("b", "c")]);
    net.start_controller("");
    net.start_agents();
    net.wait_for_topology(30).await;
    let (a, b, c) =
        (net.nodes["a"].id.clone(), net.nodes["b"].id.clone(), net.nodes["c"].id.clone());

    // Applications: sae-a at A with sae-c at C (relayed through B), sae-x at A with sae-b at B.
    for (id, (master, at), (slave, to)) in
        [(APP_X, ("sae-a", &a), ("sae-c", &c)), (APP_Y, ("sae-x", &a), ("sae-b", &b))]
    {
        let request = json!({"app_id": id, "server": {"sae_id": master, "node": at},
            "clients": [{"sae_id": slave, "node": to}], "qos": {"rate_bps": 2000}});
        let (status, body) = net.call(Method::POST, "/api/v1/applications", Some(&request)).await;
        assert_eq!(status, 201, "{body}");
    }
    // An orchestrator over the controller, its own API over mutual TLS.
    let pki = &net.pki;
    let (ocert, okey) = pki.orchestrator("top");
    let orchestrator_config = dir.path().join("orchestrator.toml");
    let tls = |cert: &PathBuf, key: &PathBuf, ca_key: &str| {
        format!(
            "{{ cert = \"{}\", key = \"{}\", {ca_key} = \"{}\" }}",
            cert.display(),
            key.display(),
            pki.ca().display()
        )
    };
    std::fs::write(
        &orchestrator_config,
        format!(
            "data_dir = \"{}\"\nmanagement_listen = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\ntls = {}\n\
             [[domains]]\nname = \"{MAIN_DOMAIN}\"\nurl = \"{}\"\ntls = {}\n",
            dir.path().join("orchestrator-data").display(),
            tls(&ocert, &okey, "client_ca"),
            net.url(""),
            tls(&ocert, &okey, "ca"),
        ),
    )
    .unwrap();
    let orchestrator = Process::start_service(
        &binary("qkdn-orchestrator"),
        &["--config".into(), orchestrator_config.display().to_string()],
        &dir.path().join("orchestrator.log"),
        "orchestrator started",
    );
    let o_api = orchestrator.port("api");

    // The callers.
    let other_dir = dir.path().join("other-ca");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_ca = TestPki::new(&other_dir);
    let callers = Callers {
        ca: pki.ca(),
        files: vec![
            (Who::NodeA, Some((pki.dir.join("node-a.crt"), pki.dir.join("node-a.key")))),
            (Who::NodeC, Some((pki.dir.join("node-c.crt"), pki.dir.join("node-c.key")))),
            (Who::SaeOfPair, Some(pki.sae("sae-a"))),
            (Who::SaeOther, Some(pki.sae("sae-x"))),
            (Who::Admin, Some(pki.operator("alice", Role::Admin))),
            (Who::Viewer, Some(pki.operator("victor", Role::Viewer))),
            (Who::Controller, Some(pki.controller(MAIN_DOMAIN))),
            (Who::OtherController, Some(pki.controller("other"))),
            (Who::Orchestrator, Some((ocert.clone(), okey.clone()))),
            (Who::Unrecognised, Some(pki.untyped("plain-client"))),
            (Who::OtherCa, Some(other_ca.operator("mallory", Role::Admin))),
            (Who::NoCert, None),
        ],
    };
    let admin = callers.client(Who::Admin);
    let agent_a = format!("https://localhost:{}", net.nodes["a"].restconf);
    let kms_a = format!("https://localhost:{}", net.nodes["a"].kms);
    let skip_a = format!("https://localhost:{}", net.nodes["a"].skip);
    let controller = net.url("");
    let orch = format!("https://localhost:{o_api}");
    let dummy_path = format!(
        "{agent_a}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={DUMMY}"
    );
    let link_ab = net.link_id("a", "b");
    let dummy = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": DUMMY, "server_app_id": "sae-m",
        "client_app_id": ["sae-n"], "backing_qkdl_id": [link_ab]}]});
    let put_dummy = || async {
        let r = admin.put(&dummy_path).header("content-type", "application/yang-data+json");
        let status = r.body(dummy.to_string()).send().await.unwrap().status().as_u16();
        assert!(status == 201 || status == 204, "dummy app: {status}");
    };
    put_dummy().await;
    // Keys for the pair, so that the key endpoints can serve.
    let sae_a = callers.client(Who::SaeOfPair);
    wait_until(30, "keys for sae-a", || async {
        send(&sae_a, Method::GET, &format!("{kms_a}/api/v1/keys/sae-c/status"), None)
            .await
            .is_some_and(|(s, b, _)| s == 200 && b["stored_key_count"].as_u64() > Some(4))
    })
    .await;
    let registration = json!({"node_id": a, "restconf_url": format!("https://127.0.0.1:{}/restconf", net.nodes["a"].restconf),
        "kms": {"etsi014_url": format!("https://127.0.0.1:{}", net.nodes["a"].kms), "peer_url": format!("https://127.0.0.1:{}", net.nodes["a"].peer)},
        "management_url": format!("https://127.0.0.1:{}/api", net.nodes["a"].restconf)});

    use Who::*;
    let readers = |extra: &[(Who, u16)]| {
        let mut v = vec![(Admin, 200), (Viewer, 200), (Orchestrator, 200)];
        v.extend_from_slice(extra);
        v
    };
    let endpoints = vec![
        Endpoint {
            what: "agent RESTCONF read",
            method: Method::GET,
            url: format!("{agent_a}/restconf/data/etsi-qkd-sdn-node:qkd_node"),
            body: None,
            format: Format::Restconf,
            allowed: readers(&[(Controller, 200)]),
        },
        Endpoint {
            what: "agent RESTCONF write (DELETE an application)",
            method: Method::DELETE,
            url: dummy_path.clone(),
            body: None,
            format: Format::Restconf,
            allowed: vec![(Admin, 204), (Controller, 204)],
        },
        Endpoint {
            what: "agent RESTCONF write (PATCH an application)",
            method: Method::PATCH,
            url: dummy_path.clone(),
            body: Some(
                json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": DUMMY, "app_priority": 3}]}),
            ),
            format: Format::Restconf,
            allowed: vec![(Admin, 204), (Controller, 204)],
        },
        Endpoint {
            what: "agent API read",
            method: Method::GET,
            url: format!("{agent_a}/api/v1/kms/stores"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[(Controller, 200)]),
        },
        Endpoint {
            what: "agent API read links",
            method: Method::GET,
            url: format!("{agent_a}/api/v1/links"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[(Controller, 200)]),
        },
        Endpoint {
            what: "agent API write (clear relay figures)",
            method: Method::DELETE,
            url: format!("{agent_a}/api/v1/kms/relays"),
            body: None,
            format: Format::Problem,
            allowed: vec![(Admin, 204)],
        },
        Endpoint {
            what: "ETSI 014 status",
            method: Method::GET,
            url: format!("{kms_a}/api/v1/keys/sae-c/status"),
            body: None,
            format: Format::Etsi014,
            allowed: vec![(SaeOfPair, 200)],
        },
        Endpoint {
            what: "ETSI 014 enc_keys",
            method: Method::POST,
            url: format!("{kms_a}/api/v1/keys/sae-c/enc_keys"),
            body: Some(json!({"number": 1})),
            format: Format::Etsi014,
            allowed: vec![(SaeOfPair, 200)],
        },
        Endpoint {
            what: "SKIP capabilities",
            method: Method::GET,
            url: format!("{skip_a}/capabilities"),
            body: None,
            format: Format::Problem,
            // Any SAE learns its own peers (sae-x has none at A).
            allowed: vec![(SaeOfPair, 200), (SaeOther, 200)],
        },
        Endpoint {
            what: "SKIP key",
            method: Method::GET,
            url: format!("{skip_a}/key?remoteSystemID=sae-c"),
            body: None,
            format: Format::Problem,
            // An SAE of no pair with sae-c: the draft's 400 for an unknown remoteSystemID.
            allowed: vec![(SaeOfPair, 200), (SaeOther, 400)],
        },
        Endpoint {
            what: "controller read",
            method: Method::GET,
            url: format!("{controller}/api/v1/links"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller read nodes",
            method: Method::GET,
            url: format!("{controller}/api/v1/nodes"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller read paths",
            method: Method::GET,
            url: format!("{controller}/api/v1/paths"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller read events",
            method: Method::GET,
            url: format!("{controller}/api/v1/events"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller read monitoring",
            method: Method::GET,
            url: format!("{controller}/api/v1/monitoring"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller write (PATCH an application's QoS)",
            method: Method::PATCH,
            url: format!("{controller}/api/v1/applications/{APP_Y}"),
            body: Some(json!({"qos": {"rate_bps": 1500}})),
            format: Format::Problem,
            allowed: vec![(Admin, 200)],
        },
        Endpoint {
            what: "controller read applications",
            method: Method::GET,
            url: format!("{controller}/api/v1/applications"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[(SaeOfPair, 200), (SaeOther, 200)]),
        },
        Endpoint {
            what: "controller read one application",
            method: Method::GET,
            url: format!("{controller}/api/v1/applications/{APP_X}"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[(SaeOfPair, 200), (SaeOther, 404)]),
        },
        Endpoint {
            what: "controller registration of node A",
            method: Method::POST,
            url: format!("{controller}/api/v1/nodes"),
            body: Some(registration.clone()),
            format: Format::Problem,
            allowed: vec![(NodeA, 200)],
        },
        Endpoint {
            what: "controller read node A's registration",
            method: Method::GET,
            url: format!("{controller}/api/v1/nodes/{a}"),
            body: None,
            format: Format::Problem,
            allowed: readers(&[(NodeA, 200)]),
        },
        Endpoint {
            what: "controller 018 read",
            method: Method::GET,
            url: format!("{controller}/restconf/data/etsi-qkd-sdn-topology:qkd_network"),
            body: None,
            format: Format::Restconf,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller 018 operation",
            method: Method::POST,
            url: format!(
                "{controller}/restconf/operations/etsi-qkd-sdn-connectivity:app-registration"
            ),
            body: Some(json!({})),
            format: Format::Restconf,
            allowed: vec![(Admin, 400), (Orchestrator, 400)],
        },
        Endpoint {
            what: "orchestrator read",
            method: Method::GET,
            url: format!("{orch}/api/v1/network"),
            body: None,
            format: Format::Problem,
            allowed: vec![(Admin, 200), (Viewer, 200)],
        },
        Endpoint {
            what: "orchestrator write (a service)",
            method: Method::POST,
            url: format!("{orch}/api/v1/services"),
            body: Some(json!({})),
            format: Format::Problem,
            allowed: vec![(Admin, 400)],
        },
        Endpoint {
            what: "orchestrator read services",
            method: Method::GET,
            url: format!("{orch}/api/v1/services"),
            body: None,
            format: Format::Problem,
            allowed: vec![(Admin, 200), (Viewer, 200)],
        },
        Endpoint {
            what: "orchestrator write (DELETE a service)",
            method: Method::DELETE,
            url: format!("{orch}/api/v1/services/{APP_Z}"),
            body: None,
            format: Format::Problem,
            allowed: vec![(Admin, 404)],
        },
        Endpoint {
            what: "orchestrator 018 read",
            method: Method::GET,
            url: format!("{orch}/restconf/data"),
            body: None,
            format: Format::Restconf,
            allowed: readers(&[]),
        },
        Endpoint {
            what: "controller write (DELETE an application)",
            method: Method::DELETE,
            url: format!("{controller}/api/v1/applications/{APP_X}"),
            body: None,
            format: Format::Problem,
            allowed: vec![(Admin, 204)],
        },
    ];

    // What the refused writes must leave as it is.
    let relays_of_a = || async {
        let body = send(&admin, Method::GET, &format!("{agent_a}/api/v1/kms/relays"), None)
            .await
            .unwrap()
            .1;
        body["relays"]
            .as_array()
            .map_or(0, |r| r.iter().map(|x| x["relays"].as_u64().unwrap_or(0)).sum::<u64>())
    };
    let requests_of_x = || async {
        let body = send(&admin, Method::GET, &format!("{agent_a}/api/v1/kms/applications"), None)
            .await
            .unwrap()
            .1;
        body["applications"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["app"] == APP_X))
            .map_or(0, |x| x["requests"].as_u64().unwrap_or(0))
    };

    let mut refused = 0u64;
    for endpoint in &endpoints {
        for who in EVERYONE {
            let expect = endpoint.expect(who);
            let cell = format!("{} by {who:?}", endpoint.what);
            let before_relays = relays_of_a().await;
            let before_requests = requests_of_x().await;
            let answer = send(
                &callers.client(who),
                endpoint.method.clone(),
                &endpoint.url,
                endpoint.body.as_ref(),
            )
            .await;
            match (&expect, &answer) {
                (Expect::NoTls, None) => continue,
                (Expect::NoTls, Some(a)) => panic!("{cell}: a TLS session was made: {a:?}"),
                (_, None) => panic!("{cell}: no TLS session"),
                (Expect::Status(status), Some((got, body, _))) => {
                    assert_eq!(got, status, "{cell}: {body}");
                }
                (Expect::Refused, Some(a)) => {
                    assert_refused(endpoint.format, &cell, a);
                    refused += 1;
                }
            }
            // Read back: a refused write changed nothing; an allowed one is undone.
            let allowed = matches!(expect, Expect::Status(_));
            match endpoint.what {
                "agent RESTCONF write (DELETE an application)" => {
                    let status = admin.get(&dummy_path).send().await.unwrap().status().as_u16();
                    if allowed {
                        assert_eq!(status, 404, "{cell}: not deleted");
                        put_dummy().await;
                    } else {
                        assert_eq!(status, 200, "{cell}: the refused delete removed it");
                    }
                }
                "agent API write (clear relay figures)" if !allowed => {
                    assert!(relays_of_a().await >= before_relays, "{cell}: figures were cleared");
                }
                "ETSI 014 enc_keys" | "SKIP key" if !allowed || who == SaeOther => {
                    assert_eq!(requests_of_x().await, before_requests, "{cell}: keys were taken");
                }
                "controller write (DELETE an application)" => {
                    let (status, app) =
                        net.call(Method::GET, &format!("/api/v1/applications/{APP_X}"), None).await;
                    if allowed {
                        assert_eq!(status, 404, "{cell}: {app}");
                    } else {
                        assert_eq!(
                            (status, &app["state"]),
                            (200, &json!("active")),
                            "{cell}: {app}"
                        );
                    }
                }
                "controller 018 operation" | "controller registration of node A" => {
                    let (_, apps) = net.call(Method::GET, "/api/v1/applications", None).await;
                    assert_eq!(apps["applications"].as_array().unwrap().len(), 2, "{cell}");
                    let (_, node) =
                        net.call(Method::GET, &format!("/api/v1/nodes/{a}"), None).await;
                    assert_eq!(node["reachable"], true, "{cell}: {node}");
                }
                "controller write (PATCH an application's QoS)" => {
                    let (_, app) =
                        net.call(Method::GET, &format!("/api/v1/applications/{APP_Y}"), None).await;
                    let expected = if allowed { 1500 } else { 2000 };
                    assert_eq!(app["qos"]["rate_bps"], expected, "{cell}: {app}");
                    if allowed {
                        let back = json!({"qos": {"rate_bps": 2000}});
                        let path = format!("/api/v1/applications/{APP_Y}");
                        assert_eq!(net.call(Method::PATCH, &path, Some(&back)).await.0, 200);
                    }
                }
                "agent RESTCONF write (PATCH an application)" => {
                    let body = admin.get(&dummy_path).send().await.unwrap().text().await.unwrap();
                    let doc: Json = serde_json::from_str(&body).unwrap();
                    let priority = &doc["etsi-qkd-sdn-node:qkd_app"][0]["app_priority"];
                    if allowed {
                        assert_eq!(priority, &json!(3), "{cell}: {doc}");
                        put_dummy().await;
                    } else {
                        assert!(priority.is_null() || priority != &json!(3), "{cell}: {doc}");
                    }
                }
                "orchestrator write (a service)" => {
                    let url = format!("{orch}/api/v1/services");
                    let services = send(&admin, Method::GET, &url, None).await.unwrap().1;
                    assert_eq!(services["services"], json!([]), "{cell}: {services}");
                }
                _ => {}
            }
        }
    }

    // What each reader saw: an SAE only its own applications.
    let own = |who| {
        let client = callers.client(who);
        let url = format!("{controller}/api/v1/applications");
        async move {
            let body = send(&client, Method::GET, &url, None).await.unwrap().1;
            body["applications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["app_id"].clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(own(SaeOther).await, vec![json!(APP_Y)]);
    assert_eq!(own(Viewer).await.len(), 1, "APP_X was deleted by the admin last");
    assert_eq!(own(SaeOfPair).await, Vec::<Json>::new());
    // A node cannot register another node, nor with plain-HTTP URLs.
    let c_as_a = send(
        &callers.client(NodeC),
        Method::POST,
        &format!("{controller}/api/v1/nodes"),
        Some(&json!({"node_id": c, "restconf_url": "http://127.0.0.1:1/restconf", "kms": {}})),
    )
    .await
    .unwrap();
    assert_refused(Format::Problem, "node C registering itself over http", &c_as_a);
    assert!(c_as_a.1["detail"].as_str().unwrap().contains("must be https"), "{:?}", c_as_a.1);

    // One application per SAE pair: a second registration for sae-x -> sae-b is a conflict,
    // whatever its app_id; an admin's explicit replacement takes the pair over.
    let z = json!({"app_id": APP_Z, "server": {"sae_id": "sae-x", "node": a},
        "clients": [{"sae_id": "sae-b", "node": b}], "qos": {"rate_bps": 1000}});
    let (status, body) = net.call(Method::POST, "/api/v1/applications", Some(&z)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(APP_Y), "{body}");
    let (status, body) =
        net.call(Method::POST, "/api/v1/applications?replace=true", Some(&z)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = net.call(Method::GET, &format!("/api/v1/applications/{APP_Y}"), None).await;
    assert_eq!(status, 404, "the replaced application is gone");
    // The node too: a second 015 application for the pair of the dummy one is refused.
    let second = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP_Z2, "server_app_id": "sae-m",
        "client_app_id": ["sae-n"], "backing_qkdl_id": [link_ab]}]});
    let url = format!(
        "{agent_a}/restconf/data/etsi-qkd-sdn-node:qkd_node/qkd_applications/qkd_app={APP_Z2}"
    );
    let answer = admin
        .put(&url)
        .header("content-type", "application/yang-data+json")
        .body(second.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    assert!(answer.text().await.unwrap().contains(DUMMY));

    // The peer service: only nodes, and a node only for itself (the peer test goes further).
    let b_node: uuid::Uuid = b.parse().unwrap();
    let peer_b = format!("https://localhost:{}", net.nodes["b"].peer);
    for who in EVERYONE {
        let Some((cert, key)) = callers.files(who) else { continue };
        let clients = qkdn_agent::peer::PeerClients::new(
            [(b_node, peer_b.clone())],
            Some(qkdn_kit::tls::ClientTls { cert, key, ca: callers.ca.clone() }),
        );
        let request = qkdn_proto::peer::v1::ReserveKeysRequest {
            link_id: link_ab.clone(),
            owner_node_id: a.clone(),
            sender_node_id: a.clone(),
            deliveries: vec![],
        };
        let answer = clients.reserve_keys(b_node, request).await;
        match who {
            NodeA => assert!(answer.is_ok(), "peer by {who:?}: {answer:?}"),
            OtherCa => assert!(answer.is_err(), "peer by {who:?}"),
            NodeC => {
                let e = answer.unwrap_err();
                assert!(e.to_string().contains("cannot speak for node"), "peer by {who:?}: {e}");
                refused += 1;
            }
            _ => {
                let e = answer.unwrap_err();
                assert!(e.to_string().contains("access denied"), "peer by {who:?}: {e}");
                refused += 1;
            }
        }
    }

    // Every refusal was counted in the metrics of the service that refused it.
    let mut counted = 0u64;
    let mut management =
        vec![net.nodes["a"].management, net.nodes["b"].management, orchestrator.port("management")];
    management.push(net.controller_ports.management);
    for port in management {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        counted += text
            .lines()
            .filter(|l| l.starts_with("qkdn_access_denied_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
            .sum::<u64>();
    }
    assert!(counted >= refused, "{counted} refusals counted, {refused} made");
    eprintln!("authorization matrix: {refused} refusals made, {counted} counted");
    drop(orchestrator);
}
