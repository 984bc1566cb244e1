//! The SKIP key provider (draft-cisco-skip-02) through its real interfaces: two KMS agents over
//! the link A-B, encryptors sae-a at A and sae-b at B (an SAE pair). The `skip-qkd` client from
//! PyPI (written by others, run in the repository's venv) takes a key at A with a certificate
//! and the same key by its ID at B with a pre-shared key; a SKIP key is redeemed over ETSI 014
//! and a 014 key over SKIP; the draft's errors and the callers that must be refused are checked
//! over raw HTTPS, with the stores unchanged after each refusal.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qkdn_kit::pki::Usage;
use qkdn_kit::tls;
use serde_json::{Value as Json, json};

use crate::harness::*;
use crate::kms::{KmsNode, Sae, key_bytes, key_ids, pair_saes, start_kms_node, wait_for_keys};

/// The pre-shared key of encryptor sae-b at B (hex), written to its key file.
const PSK_B: &str = "5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee5a17c0ffee0001";

/// The `skip-qkd` client of the repository's venv, run once per request.
struct SkipQkd {
    address: String,
    /// `cert CA CERT KEY` or `psk IDENTITY HEX`, as `skip_client.py` takes them.
    credential: Vec<String>,
}

impl SkipQkd {
    fn with_certificate(pki: &TestPki, sae: &str, port: u16) -> SkipQkd {
        let (cert, key) = pki.issue_sae(sae);
        let files = [pki.ca(), cert, key].map(|p| p.display().to_string());
        SkipQkd {
            address: format!("localhost:{port}"),
            credential: [vec!["cert".to_owned()], files.to_vec()].concat(),
        }
    }

    fn with_key(identity: &str, hex: &str, port: u16) -> SkipQkd {
        SkipQkd {
            address: format!("127.0.0.1:{port}"),
            credential: vec!["psk".into(), identity.into(), hex.into()],
        }
    }

    /// The answer, or the client's error line.
    fn call(&self, request: &[&str]) -> Result<Json, String> {
        let python = repo().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/test, which installs skip-qkd in the venv",
            python.display()
        );
        let mut args = vec![repo().join("tests/python/skip_client.py").display().to_string()];
        args.push(self.credential[0].clone());
        args.push(self.address.clone());
        args.push("encryptor".into());
        args.extend(self.credential[1..].iter().cloned());
        args.extend(request.iter().map(|s| s.to_string()));
        let output = Command::new(python).args(&args).output().expect("run the SKIP client");
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() {
            Ok(serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}")))
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
        }
    }
}

/// A raw HTTPS caller of a SKIP listener with `cert`/`key` (or none).
fn raw_client(pki: &TestPki, identity: Option<(PathBuf, PathBuf)>) -> reqwest::Client {
    let config = match &identity {
        Some((cert, key)) => {
            tls::client_config(&pki.ca(), Some((cert.as_path(), key.as_path()))).unwrap()
        }
        None => tls::client_config(&pki.ca(), None).unwrap(),
    };
    https_client(config, Duration::from_secs(10))
}

async fn raw(client: &reqwest::Client, method: reqwest::Method, url: &str) -> (u16, Json, String) {
    let response = client.request(method, url).send().await.unwrap();
    let status = response.status().as_u16();
    let allow =
        response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let content_type = response.headers().get("content-type").cloned();
    let text = response.text().await.unwrap();
    let body: Json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("no JSON body: {text:?}"));
    if status != 200 {
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{body}"
        );
        assert_eq!(body["status"], status, "an RFC 9457 body: {body}");
    }
    (status, body, allow)
}

fn skip_section(psk_file: Option<&Path>) -> String {
    let mut text = "[kms.skip]\nlisten = \"127.0.0.1:0\"\n".to_owned();
    if let Some(file) = psk_file {
        text.push_str(&format!(
            "psk_listen = \"127.0.0.1:0\"\n[[kms.skip.psk]]\nsae = \"sae-b\"\nkey_file = \"{}\"\n",
            file.display()
        ));
    }
    text
}

/// Keys node `agent`'s store of the link has handed out since start (what a refusal must not
/// change), read after the store's once-a-second figures caught up.
async fn consumed(agent: &AgentProcess) -> u64 {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let url = format!("http://127.0.0.1:{}/metrics", agent.management);
    let metrics = reqwest::get(url).await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("qkdn_key_store_consumed_keys_total") && l.contains(LINK_AB))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no consumed count in:\n{metrics}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryptors_share_keys_over_skip_with_certificates_and_pre_shared_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let psk_file = dir.path().join("sae-b.psk");
    std::fs::write(&psk_file, PSK_B).unwrap();
    let (peer_a, peer_b, kms_a, kms_b) = (free_port(), free_port(), free_port(), free_port());
    let a_ends = (NODE_A, 101, NODE_B, 201);
    let skip_a = skip_section(None);
    let a: KmsNode =
        start_kms_node(dir.path(), &pki, "a", a_ends, (peer_a, peer_b, kms_a), &skip_a);
    let b_ends = (NODE_B, 201, NODE_A, 101);
    let skip_b = skip_section(Some(&psk_file));
    let b: KmsNode =
        start_kms_node(dir.path(), &pki, "b", b_ends, (peer_b, peer_a, kms_b), &skip_b);
    pair_saes(&a, "aaaa0000-0000-4000-8000-00000000000a", "sae-a", "sae-b").await;
    pair_saes(&b, "aaaa0000-0000-4000-8000-00000000000b", "sae-b", "sae-a").await;
    let (skip_port_a, skip_port_b) = (a.agent.process.port("skip"), b.agent.process.port("skip"));
    let psk_port_b = b.agent.process.port("skip_psk");
    let sae_a_014 = Sae::new(&pki, "sae-a", kms_a);
    let sae_b_014 = Sae::new(&pki, "sae-b", kms_b);
    wait_for_keys(&sae_a_014, "sae-b", 20).await;

    // sae-a at A, with its certificate: capabilities name it and its peer; a key for sae-b.
    let at_a = SkipQkd::with_certificate(&pki, "sae-a", skip_port_a);
    let capabilities = at_a.call(&["capabilities"]).unwrap();
    assert_eq!(
        capabilities,
        json!({"entropy": true, "key": true, "algorithm": "QKD", "localSystemID": "sae-a",
            "remoteSystemID": ["sae-b"]})
    );
    let taken = at_a.call(&["key", "sae-b"]).unwrap();
    let key_id = taken["keyId"].as_str().unwrap().to_owned();
    let key = taken["key"].as_str().unwrap().to_owned();
    assert_eq!((key_id.len(), key.len()), (32, 64), "a 128-bit ID and a 256-bit key: {taken}");

    // sae-b at B, with its pre-shared key: the same key by its ID, once.
    let at_b = SkipQkd::with_key("sae-b", PSK_B, psk_port_b);
    let capabilities = at_b.call(&["capabilities"]).unwrap();
    assert_eq!(capabilities["localSystemID"], "sae-b", "the key's SAE, not the Host header");
    let fetched = at_b.call(&["key-by-id", &key_id.to_uppercase(), "sae-a"]).unwrap();
    assert_eq!(fetched, json!({"keyId": key_id, "key": key}));
    let again = at_b.call(&["key-by-id", &key_id, "sae-a"]).unwrap_err();
    assert!(again.contains("400"), "a key is handed out once: {again}");

    // Sizes: a 512-bit key; a size the KMS does not serve is refused.
    let long = at_a.call(&["key", "sae-b", "512"]).unwrap();
    assert_eq!(long["key"].as_str().unwrap().len(), 128);
    let odd = at_a.call(&["key", "sae-b", "300"]).unwrap_err();
    assert!(odd.contains("400"), "{odd}");
    // sae-b may also use its certificate at B.
    let at_b_certified = SkipQkd::with_certificate(&pki, "sae-b", skip_port_b);
    let fetched =
        at_b_certified.call(&["key-by-id", long["keyId"].as_str().unwrap(), "sae-a"]).unwrap();
    assert_eq!(fetched["key"], long["key"]);

    // Entropy: 256 bits by default, more on request.
    let entropy = at_b.call(&["entropy"]).unwrap();
    assert_eq!(
        (entropy["randomStr"].as_str().unwrap().len(), &entropy["minentropy"]),
        (64, &json!(256))
    );
    assert_eq!(at_a.call(&["entropy", "1024"]).unwrap()["randomStr"].as_str().unwrap().len(), 256);

    // Across interfaces: a SKIP key redeemed over ETSI 014, and a 014 key over SKIP.
    let over_skip = at_a.call(&["key", "sae-b"]).unwrap();
    let uuid = uuid::Uuid::parse_str(over_skip["keyId"].as_str().unwrap()).unwrap().to_string();
    let over_014 = sae_b_014.get(&format!("sae-a/dec_keys?key_ID={uuid}")).await;
    assert_eq!(over_014.status, 200, "{}", over_014.body);
    assert_eq!(hex(&key_bytes(&over_014)[0]), over_skip["key"].as_str().unwrap());
    let issued = sae_a_014.post("sae-b/enc_keys", &json!({"number": 1, "size": 256})).await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let id_014 = key_ids(&issued)[0].replace('-', "");
    let by_skip = at_b.call(&["key-by-id", &id_014, "sae-a"]).unwrap();
    assert_eq!(by_skip["key"].as_str().unwrap(), hex(&key_bytes(&issued)[0]));

    // The draft's errors, over raw HTTPS with sae-a's certificate; none changes the stores.
    let client_a = raw_client(&pki, Some(pki.issue_sae("sae-a")));
    let base = format!("https://localhost:{skip_port_a}");
    let before = (consumed(&a.agent).await, consumed(&b.agent).await);
    assert!(before.0 >= 4 && before.1 >= 4, "the keys handed out so far are counted: {before:?}");
    for (path, status) in [
        ("/key", 400),                                           // no remoteSystemID
        ("/key?remoteSystemID=", 400),                           // an empty one
        ("/key?remoteSystemID=sae-zz", 400),                     // not a peer of sae-a
        ("/key?remoteSystemID=sae-b&size=abc", 400),             // not a number
        ("/key?remoteSystemID=sae-b&size=7", 400),               // not whole bytes
        ("/key?remoteSystemID=sae-b&size=65536", 400),           // beyond the largest size
        ("/key?remoteSystemID=sae-b&colour=red", 400),           // an unknown parameter
        ("/key?remoteSystemID=sae-b&remoteSystemID=sae-b", 400), // given twice
        ("/key/xyz?remoteSystemID=sae-b", 400),                  // a malformed keyId
        ("/key/0123456789abcdef0123456789abcdef?remoteSystemID=sae-b", 400), // no such key
        ("/key/0123456789abcdef0123456789abcdef", 400),          // no remoteSystemID
        ("/entropy?minentropy=7", 400),
        ("/entropy?minentropy=1000000", 400),
        ("/keys", 404),
        ("/", 404),
    ] {
        let (got, body, _) = raw(&client_a, reqwest::Method::GET, &format!("{base}{path}")).await;
        assert_eq!(got, status, "GET {path}: {body}");
    }
    for method in [reqwest::Method::POST, reqwest::Method::DELETE, reqwest::Method::PUT] {
        let (got, body, allow) =
            raw(&client_a, method.clone(), &format!("{base}/key?remoteSystemID=sae-b")).await;
        assert_eq!((got, allow.as_str()), (405, "GET"), "{method} /key: {body}");
    }
    let after = (consumed(&a.agent).await, consumed(&b.agent).await);
    assert_eq!(after, before, "refused requests consumed no key");

    // Callers that are not the encryptor of a pair: refused, and nothing taken.
    let stranger = raw_client(&pki, Some(pki.issue_sae("sae-x")));
    let (status, body, _) =
        raw(&stranger, reqwest::Method::GET, &format!("{base}/key?remoteSystemID=sae-b")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) =
        raw(&stranger, reqwest::Method::GET, &format!("{base}/capabilities")).await;
    assert_eq!((status, &body["remoteSystemID"]), (200, &json!([])), "{body}");
    let admin = qkdn_kit::Identity::Operator { name: "root".into(), role: qkdn_kit::Role::Admin };
    let node = qkdn_kit::Identity::Node(NODE_B.parse().unwrap());
    for (name, identity) in [("admin", admin), ("node-b-as-client", node)] {
        let files = pki.issue_identity(name, &identity, Usage::Client);
        let client = raw_client(&pki, Some(files));
        let (status, body, _) =
            raw(&client, reqwest::Method::GET, &format!("{base}/key?remoteSystemID=sae-b")).await;
        assert_eq!(status, 403, "{name}: {body}");
    }
    let anonymous = raw_client(&pki, None);
    let refused = anonymous.get(format!("{base}/key?remoteSystemID=sae-b")).send().await;
    assert!(refused.map(|r| r.status().as_u16()).unwrap_or(401) >= 400, "no certificate, no key");
    // A wrong pre-shared key, or an identity nobody listed: no connection at all.
    let wrong = SkipQkd::with_key("sae-b", &PSK_B.replace("0001", "0002"), psk_port_b);
    assert!(wrong.call(&["capabilities"]).is_err());
    let unknown = SkipQkd::with_key("sae-a", PSK_B, psk_port_b);
    assert!(unknown.call(&["capabilities"]).is_err());
    let after = (consumed(&a.agent).await, consumed(&b.agent).await);
    assert_eq!(after, before, "refused callers consumed no key");

    // Operators see each interface's deliveries and refusals.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", a.agent.management))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered = metrics
        .lines()
        .find(|l| {
            l.starts_with("qkdn_kms_key_requests_total")
                && l.contains("interface=\"skip\"")
                && l.contains("operation=\"issue\"")
                && l.contains("outcome=\"delivered\"")
        })
        .unwrap_or_else(|| panic!("no SKIP issue count in:\n{metrics}"));
    assert!(delivered.ends_with(" 3"), "three keys taken at A over SKIP: {delivered}");
    assert!(metrics.lines().any(|l| l.starts_with("qkdn_kms_key_requests_total")
        && l.contains("interface=\"skip\"")
        && l.contains("outcome=\"refused\"")
        && !l.ends_with(" 0")));

    // No key, in hex or base64, in any log (the IDs are there, at debug level).
    let keys: Vec<Vec<u8>> = [&key, long["key"].as_str().unwrap()]
        .iter()
        .map(|k| {
            (0..k.len()).step_by(2).map(|i| u8::from_str_radix(&k[i..i + 2], 16).unwrap()).collect()
        })
        .collect();
    let id = uuid::Uuid::parse_str(&key_id).unwrap().to_string();
    assert_logs_hold_no_keys(dir.path(), &keys, &[id]);
    drop((a, b));
}
