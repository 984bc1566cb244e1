//! `qkdn yang validate` and `qkdn yang modules` (and `lab topologies` as JSON), run as a real
//! process.

use std::path::Path;
use std::process::Command;

fn qkdn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn")).args(args).output().expect("run qkdn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples/qkd-node.json")
        .display()
        .to_string()
}

#[test]
fn a_valid_document_passes() {
    let (code, out, err) = qkdn(&["yang", "validate", &example()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(": valid\n"), "{out}");
}

#[test]
fn errors_name_the_file_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000", "qkdn_colour": 1}}"#).unwrap();
    let (code, _, err) = qkdn(&["yang", "validate", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}: ", bad.display())), "{err}");
    assert!(err.contains("qkdn_colour"), "{err}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"a\": \n").unwrap();
    let (code, _, err) = qkdn(&["yang", "validate", broken.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}:3:", broken.display())), "{err}");
    let (code, _, _) = qkdn(&["yang", "validate", "/nonexistent/file.json"]);
    assert_eq!(code, 2);
}

#[test]
fn tolerant_input_is_printed_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tfs.json");
    std::fs::write(&file, r#"{"qkd_node": {"qkdn_id": "00000001-0000-0000-0000-000000000000", "qkd_interfaces": {"qkd_interface": [{"qkdi_id": "100"}]}}}"#).unwrap();
    let (code, _, _) = qkdn(&["yang", "validate", file.to_str().unwrap()]);
    assert_eq!(code, 1, "strict validation refuses the TeraFlowSDN-style input");
    let (code, out, err) = qkdn(&["yang", "validate", "--tolerant", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        printed["etsi-qkd-sdn-node:qkd_node"]["qkd_interfaces"]["qkd_interface"][0]["qkdi_id"],
        100
    );
}

#[test]
fn modules_lists_the_embedded_modules() {
    let (code, out, _) = qkdn(&["yang", "modules"]);
    assert_eq!(code, 0);
    assert!(out.contains("etsi-qkd-sdn-node@2022-01-30  implemented"), "{out}");
    assert!(out.contains("ietf-inet-types@2013-07-15  implemented"), "{out}");
}

#[test]
fn output_json_gives_scripts_the_verdicts_and_lists() {
    let (code, out, _) = qkdn(&["yang", "validate", &example(), "--output", "json"]);
    let verdict: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, &verdict["valid"]), (0, &serde_json::json!(true)), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"etsi-qkd-sdn-node:qkd_node": {"qkdn_id": "not-a-uuid"}}"#).unwrap();
    let (code, out, _) = qkdn(&["yang", "validate", bad.to_str().unwrap(), "-o", "json"]);
    let verdict: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, &verdict["valid"]), (1, &serde_json::json!(false)), "{out}");
    assert!(verdict["message"].as_str().is_some_and(|m| !m.is_empty()), "{out}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"a\": \n").unwrap();
    let (code, out, _) = qkdn(&["yang", "validate", broken.to_str().unwrap(), "-o", "json"]);
    let verdict: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, &verdict["line"]), (1, &serde_json::json!(3)), "{out}");

    let (code, out, _) = qkdn(&["yang", "modules", "-o", "json"]);
    let modules: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0);
    let node = modules.as_array().unwrap().iter().find(|m| m["name"] == "etsi-qkd-sdn-node");
    assert_eq!(node.unwrap()["revision"], "2022-01-30");
    let (code, out, _) = qkdn(&["lab", "topologies", "-o", "json"]);
    let topologies: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0);
    let names: Vec<&str> =
        topologies.as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["metro-ring", "nsfnet", "two-domains"]);
}
