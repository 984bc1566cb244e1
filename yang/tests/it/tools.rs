//! Checks with the standard YANG tools, run as external programs:
//!
//! * pyang: the schema tree of each of our ETSI 015 modules must equal the reference tree, our
//!   identities and typedefs must equal the reference summary, and `pyang --strict` must be
//!   silent;
//! * yanglint (libyang-tools): a GET of a populated `qkd_node` must validate.
//!
//! The tools come from `scripts/test` (pyang in `.venv`, yanglint from Debian). Without them the
//! tests say so and pass, unless `QKDN_REQUIRE_TOOLS=1` (set by `scripts/test` and CI), which
//! makes a missing tool a failure.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;

use super::harness::{TestServer, example_node, reference_dir, repo_root};

fn find_tool(env: &str, venv_name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path));
    }
    let venv = repo_root().join(".venv/bin").join(venv_name);
    if venv.exists() {
        return Some(venv);
    }
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {venv_name}")).output().ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn require(tool: &str) -> bool {
    let required = std::env::var("QKDN_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{tool} is required (QKDN_REQUIRE_TOOLS=1) but was not found; run scripts/test"
    );
    eprintln!("SKIPPED: {tool} not found (run scripts/test to install it)");
    false
}

fn modules_dir() -> PathBuf {
    repo_root().join("yang/modules")
}

const MODULES: [&str; 2] =
    ["etsi-qkd-node-types@2022-01-30.yang", "etsi-qkd-sdn-node@2022-01-30.yang"];

/// The reference `pyang -f tree` output of `module_file`: the lines of its section that are not
/// comments.
fn reference_tree(module_file: &str) -> String {
    let text = std::fs::read_to_string(reference_dir().join("yang/reference-trees.txt")).unwrap();
    let marker = format!("################ {module_file}\n");
    let start =
        text.find(&marker).unwrap_or_else(|| panic!("no section for {module_file}")) + marker.len();
    let section = &text[start..];
    let end = section.find("################").unwrap_or(section.len());
    section[..end]
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_owned()
}

#[test]
fn pyang_trees_equal_the_reference() {
    let Some(pyang) = find_tool("QKDN_PYANG", "pyang") else {
        require("pyang");
        return;
    };
    for module in MODULES {
        let path = modules_dir().join(module);
        let strict = Command::new(&pyang)
            .arg("--strict")
            .arg("-p")
            .arg(modules_dir())
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            strict.status.success(),
            "pyang --strict {module}: {}",
            String::from_utf8_lossy(&strict.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&strict.stderr),
            "",
            "pyang --strict warns about {module}"
        );
        let tree = Command::new(&pyang)
            .args(["-f", "tree", "--tree-line-length", "120", "-p"])
            .arg(modules_dir())
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            tree.status.success(),
            "pyang -f tree {module}: {}",
            String::from_utf8_lossy(&tree.stderr)
        );
        let ours = String::from_utf8_lossy(&tree.stdout).trim_matches('\n').to_owned();
        assert_eq!(
            ours,
            reference_tree(module),
            "the schema tree of {module} differs from the reference"
        );
    }
}

/// The identity/typedef summary of the reference file for etsi-qkd-node-types.
fn reference_summary() -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
    let text = std::fs::read_to_string(reference_dir().join("yang/reference-trees.txt")).unwrap();
    let (mut identities, mut typedefs) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(rest) = line.strip_prefix("identity ") {
            let (name, derived) = rest.split_once("<-").unwrap();
            let derived = derived.split(',').map(|d| d.trim().to_owned()).collect();
            identities.insert(name.trim().to_owned(), derived);
        } else if let Some(rest) = line.strip_prefix("typedef ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap().to_owned();
            let base = parts.next().unwrap().to_owned();
            let restriction = match base.as_str() {
                "identityref" => parts.nth(1).unwrap().to_owned(),
                _ => parts.nth(1).unwrap().to_owned(),
            };
            typedefs.insert(name, vec![base, restriction]);
        }
    }
    (identities, typedefs)
}

#[test]
fn pyang_identities_and_typedefs_equal_the_reference() {
    let Some(pyang) = find_tool("QKDN_PYANG", "pyang") else {
        require("pyang");
        return;
    };
    let python = pyang.with_file_name("python3");
    let python = if python.exists() { python } else { PathBuf::from("python3") };
    let out = Command::new(python)
        .arg(repo_root().join("yang/tests/pyang_summary.py"))
        .arg(modules_dir())
        .arg(modules_dir().join(MODULES[0]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ours: Json = serde_json::from_slice(&out.stdout).unwrap();
    let (identities, typedefs) = reference_summary();
    assert_eq!(identities.len(), 10);
    for (base, derived) in &identities {
        let mut got: Vec<String> = ours["identities"][base]
            .as_array()
            .unwrap_or_else(|| panic!("identity {base} missing"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut want = derived.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "identities derived from {base}");
    }
    let bases: usize = identities.values().map(Vec::len).sum::<usize>() + identities.len();
    assert_eq!(ours["identities"].as_object().unwrap().len(), bases, "no extra identities");
    assert_eq!(typedefs.len(), 12);
    for (name, spec) in &typedefs {
        assert_eq!(ours["typedefs"][name], serde_json::json!(spec), "typedef {name}");
    }
    assert_eq!(ours["typedefs"].as_object().unwrap().len(), typedefs.len(), "no extra typedefs");
}

#[tokio::test]
async fn yanglint_validates_a_populated_node() {
    let Some(yanglint) = find_tool("QKDN_YANGLINT", "yanglint") else {
        require("yanglint");
        return;
    };
    let server = TestServer::start(example_node()).await;
    let body = server
        .http()
        .get(server.url("/restconf/data/etsi-qkd-sdn-node:qkd_node"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: Json = serde_json::from_str(&body).unwrap();
    assert!(
        doc["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"].as_array().unwrap().len() >= 2
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qkd_node.json");
    std::fs::write(&file, &body).unwrap();
    let mut lint = Command::new(&yanglint);
    lint.arg("-p").arg(modules_dir());
    for module in MODULES {
        lint.arg(modules_dir().join(module));
    }
    let out = lint.arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "yanglint refused the GET output: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: the same tool refuses a broken copy.
    let broken = body.replace("etsi-qkd-node-types:PHYS", "etsi-qkd-node-types:PHYSICAL");
    std::fs::write(&file, broken).unwrap();
    let mut lint = Command::new(&yanglint);
    lint.arg("-p").arg(modules_dir());
    for module in MODULES {
        lint.arg(modules_dir().join(module));
    }
    assert!(!lint.arg(&file).output().unwrap().status.success());
}
