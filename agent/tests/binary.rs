//! The `qkdn-agent` program's command line, as the service kit gives it: the common flags and
//! the agent's own in `--help`, `check-config` on a bad file (every problem at its file, line
//! and key; status 1), and a bad flag value refused before anything starts (status 2). Running
//! agents are tested as processes in `qkdn-tests` (`tests/tests/agent/`); this test also makes
//! `cargo test --workspace` build the agent binary those tests start.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qkdn-agent"))
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn help_lists_the_common_flags_and_the_agents_own() {
    let out = agent().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--management-listen",
        "--data-dir",
        "--log-format",
        "--node-id",
        "--controller",
        "check-config",
    ] {
        assert!(help.contains(flag), "no {flag} in:\n{help}");
    }
    assert!(help.contains("The qkdn node agent"), "{help}");
}

#[test]
fn check_config_names_a_bad_value_at_its_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "insecure_allow_unauthenticated = true\n[node]\nid = \"not a uuid\"\n")
        .unwrap();
    let out = agent().arg("check-config").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}:3: node.id", file.display())), "{err}");
    assert!(err.contains("1 problem(s)"), "{err}");
}

#[test]
fn a_bad_flag_value_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo().join("deploy/agents/node-a.toml");
    let out = agent()
        .arg("--config")
        .arg(&file)
        .args(["--node-id", "not-a-uuid", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("qkdn-agent: ") && err.contains("node.id"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was written");
}
