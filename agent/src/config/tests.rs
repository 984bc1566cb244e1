//! Configuration checks: each problem is found, placed at its file line and explained.

use std::path::Path;

use super::load_file;

const HEAD: &str = r#"data_dir = "/tmp/qkdn-test"
insecure_allow_unauthenticated = true
[node]
id = "00000001-0000-0000-0000-000000000000"
"#;

fn problems(body: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, format!("{HEAD}{body}")).unwrap();
    match load_file(&file) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems
            .iter()
            .map(|p| p.to_string().replace(&file.display().to_string(), "FILE"))
            .collect(),
    }
}

fn one(body: &str) -> String {
    let found = problems(body);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

#[test]
fn a_minimal_configuration_is_valid() {
    assert_eq!(problems(""), Vec::<String>::new());
}

#[test]
fn unknown_keys_and_bad_values_are_placed_and_explained() {
    assert_eq!(
        one("[restconf]\nlisen = \"127.0.0.1:1\"\n"),
        "FILE:6: restconf.lisen: unknown key `lisen`; expected one of: listen, tls, compat_unprefixed, advertised_url"
    );
    let plain = one("[restconf]\nlisten = \"0.0.0.0:8441\"\n");
    assert!(
        plain.starts_with(
            "FILE:6: restconf.listen: 0.0.0.0:8441: plain HTTP is allowed on loopback only"
        ),
        "{plain}"
    );
}

#[test]
fn a_listener_that_authenticates_nobody_is_refused() {
    // Without the escape hatch, plain HTTP on loopback authenticates nobody.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    let text = HEAD.replace("insecure_allow_unauthenticated = true\n", "");
    std::fs::write(&file, &text).unwrap();
    let found: Vec<String> =
        load_file(&file).unwrap_err().problems.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("restconf.tls: missing: nobody calling 127.0.0.1:8441"), "{found:?}");
    // TLS without a client CA beyond loopback: nobody authenticated either, escape hatch or not.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let found = problems(&format!(
        "[peer]\nlisten = \"0.0.0.0:7441\"\ntls = {{ cert = \"{manifest}\", key = \"{manifest}\" }}\n"
    ));
    assert!(
        found.iter().any(|p| p.contains("peer.tls.client_ca: missing: callers on 0.0.0.0:7441")),
        "{found:#?}"
    );
    // A controller URL without a domain that may write the node.
    let found = problems("[controller]\nurls = [\"https://c:8450\"]\n");
    assert!(found.is_empty(), "plain RESTCONF (escape hatch) lets anyone write: {found:?}");
}

#[test]
fn tls_files_must_exist_and_parse() {
    let found = problems(
        "[restconf]\ntls = { cert = \"/nonexistent/a.crt\", key = \"/nonexistent/a.key\" }\n",
    );
    assert_eq!(
        found,
        [
            "FILE:6: restconf.tls.cert: /nonexistent/a.crt: no such file",
            "FILE:6: restconf.tls.key: /nonexistent/a.key: no such file"
        ]
    );
    // Present but not PEM: the file is named with what is wrong.
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let found =
        one(&format!("[restconf]\ntls = {{ cert = \"{manifest}\", key = \"{manifest}\" }}\n"));
    assert!(
        found.contains(&format!("restconf.tls: {manifest}: no CERTIFICATE in the file")),
        "{found}"
    );
}

#[test]
fn peer_and_etsi014_links_need_each_other() {
    let device = r#"
[[interfaces]]
id = 101
technology = "DV-QKD"
[interfaces.device]
driver = "etsi014"
kme_url = "https://kme:443"
sae_id = "a"
peer_sae_id = "b"
role = "master"
tls = { cert = "/nonexistent/c", key = "/nonexistent/k", ca = "/nonexistent/ca" }

[[links]]
id = "a0b00000-0000-4000-8000-000000000001"
local_interface = 101
remote_node = "00000002-0000-0000-0000-000000000000"
remote_interface = 201
wavelength = 20
role = "TRANSMITTER"
length_km = 10.0
"#;
    let found = problems(device);
    assert!(
        found.iter().any(|p| p.contains("links[0].remote_node: 00000002-0000-0000-0000-000000000000: the ETSI 014 master end sends key IDs to the other end; add it to [[neighbours]]")),
        "{found:#?}"
    );
    let slave = device.replace("role = \"master\"", "role = \"slave\"");
    let found = problems(&slave);
    assert!(found.iter().any(|p| p.contains("links[0].local_interface: 101: the ETSI 014 slave end receives key IDs from the other end; set peer.listen")), "{found:#?}");
    let neighbour = "[[neighbours]]\nnode = \"00000001-0000-0000-0000-000000000000\"\nurl = \"http://10.0.0.2:7441\"\n";
    let found = problems(neighbour);
    assert!(
        found
            .iter()
            .any(|p| p.contains("neighbours[0].node") && p.contains("this is the node itself")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.contains("neighbours[0].url")
            && p.contains("plain HTTP is allowed to loopback only")),
        "{found:#?}"
    );
}

/// The example node `node`'s configuration, with its simulator secret made as its header
/// says (in a temporary folder instead of `qkdn-example/`).
fn example(node: &str, secrets: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join(format!("deploy/agents/node-{node}.toml")))
        .unwrap()
        .replace("qkdn-example/", &format!("{}/", secrets.display()));
    let secret = secrets.join("simulator-secret");
    if !secret.exists() {
        qkdn_kit::pki::write_new_secret(&secret).unwrap();
    }
    let file = secrets.join(format!("node-{node}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn the_example_network_is_valid() {
    let secrets = tempfile::tempdir().unwrap();
    for node in ["a", "b", "c"] {
        let file = example(node, secrets.path());
        if let Err(e) = load_file(&file) {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn the_environment_is_read_for_configuration_keys_only() {
    // Every top-level key of the model is listed (a key missing from the list could not be set
    // from the environment).
    let secrets = tempfile::tempdir().unwrap();
    let serialized =
        serde_json::to_value(super::load_file(&example("a", secrets.path())).unwrap()).unwrap();
    let mut keys: Vec<&str> = serialized.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut listed = super::TOP_LEVEL_KEYS.to_vec();
    listed.sort_unstable();
    assert_eq!(keys, listed);
}
