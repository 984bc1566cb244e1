//! `qkdn pki`: a CA, certificates of every kind of identity (each naming exactly the identity
//! asked for), a store key and a secret, usable by the TLS policy of every qkdn service.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn qkdn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_qkdn")).args(args).output().unwrap()
}

#[test]
fn the_pki_commands_make_a_working_pki() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca_arg = ca.to_str().unwrap();
    assert!(qkdn(&["pki", "ca", "--dir", ca_arg]).status.success());
    let again = qkdn(&["pki", "ca", "--dir", ca_arg]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("a CA exists already"));
    let node = "00000001-0000-0000-0000-000000000000";
    let out = dir.path().join("node-a");
    let issued = qkdn(&[
        "pki",
        "node",
        "--dir",
        ca_arg,
        "--id",
        node,
        "--host",
        "node-a.lab",
        "--host",
        "10.0.0.1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let cert = out.join(format!("node-{node}.crt"));
    let key = out.join(format!("node-{node}.key"));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(qkdn(&["pki", "sae", "--dir", ca_arg, "--name", "sae-1"]).status.success());
    // Every kind, each certificate naming exactly its identity.
    let kinds: [(&[&str], &str, &str); 5] = [
        (&["node", "--id", node], &format!("node-{node}"), &format!("urn:qkdn:node:{node}")),
        (&["sae", "--name", "sae-1"], "sae-1", "urn:qkdn:sae:sae-1"),
        (&["controller", "--domain", "metro"], "controller-metro", "urn:qkdn:controller:metro"),
        (&["orchestrator", "--name", "top"], "orchestrator-top", "urn:qkdn:orchestrator:top"),
        (
            &["operator", "--name", "ann", "--role", "viewer"],
            "operator-ann",
            "urn:qkdn:operator:viewer:ann",
        ),
    ];
    for (args, file, uri) in kinds {
        let mut command = vec!["pki", "issue"];
        command.extend_from_slice(&args[..1]);
        command.extend(["--dir", ca_arg]);
        command.extend_from_slice(&args[1..]);
        let issued = qkdn(&command);
        assert!(
            issued.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&issued.stderr)
        );
        let pem = std::fs::read_to_string(ca.join(format!("{file}.crt"))).unwrap();
        let der = rustls::pki_types::CertificateDer::from(
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
                .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
                .unwrap(),
        );
        let identity = qkdn_kit::Identity::from_certificate(&der).unwrap();
        assert_eq!(identity.uri(), uri);
        let key = ca.join(format!("{file}.key"));
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Names a certificate could not carry are refused.
    let bad = qkdn(&["pki", "issue", "controller", "--dir", ca_arg, "--domain", "a b"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a qkdn identity"));
    // --file names the files.
    let named = qkdn(&["pki", "sae", "--dir", ca_arg, "--name", "sae-9", "--file", "nine"]);
    assert!(named.status.success());
    assert!(ca.join("nine.crt").exists());
    let bad = qkdn(&["pki", "node", "--dir", ca_arg, "--id", "node-a"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected a UUID"));
    let missing =
        qkdn(&["pki", "sae", "--dir", dir.path().join("nowhere").to_str().unwrap(), "--name", "x"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("create the CA with"));

    // The operator's spellings: `init` for the CA, `issue` for certificates, JSON for scripts.
    let other = dir.path().join("other-ca");
    let other_arg = other.to_str().unwrap();
    assert!(qkdn(&["pki", "init", "--dir", other_arg]).status.success());
    let issued =
        qkdn(&["pki", "issue", "sae", "--dir", other_arg, "--name", "sae-2", "-o", "json"]);
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let written: serde_json::Value = serde_json::from_slice(&issued.stdout).unwrap();
    assert_eq!(written["cert"], other.join("sae-2.crt").to_str().unwrap());
    assert_eq!(written["key"], other.join("sae-2.key").to_str().unwrap());
    qkdn_kit::tls::client_config(
        &other.join("ca.crt"),
        Some((&other.join("sae-2.crt"), &other.join("sae-2.key"))),
    )
    .unwrap();

    // The files work with the TLS policy: a node server requiring SAE client certificates.
    let ca_cert = ca.join("ca.crt");
    qkdn_kit::tls::server_config(&cert, &key, Some(&ca_cert)).unwrap();
    qkdn_kit::tls::client_config(&ca_cert, Some((&ca.join("sae-1.crt"), &ca.join("sae-1.key"))))
        .unwrap();
    let pem = std::fs::read_to_string(&cert).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let store_key = dir.path().join("store.key");
    assert!(qkdn(&["pki", "store-key", "--out", store_key.to_str().unwrap()]).status.success());
    let hex = std::fs::read_to_string(&store_key).unwrap();
    assert_eq!(hex.trim().len(), 64);
    assert!(hex.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(std::fs::metadata(&store_key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        qkdn(&["pki", "store-key", "--out", store_key.to_str().unwrap()]).status.code(),
        Some(2)
    );
    let secret = dir.path().join("simulator-secret");
    assert!(qkdn(&["pki", "secret", "--out", secret.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read_to_string(&secret).unwrap().trim().len(), 64);
    assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
}
