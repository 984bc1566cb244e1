//! The `qkdn-controller` program: configuration problems are named with file, line and key and
//! stop it with status 2; a good configuration starts it, `/readyz` answers, the OpenAPI
//! document is served, and SIGTERM stops it cleanly; `--log-format json` writes JSON lines.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(config: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-controller"))
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn configuration_problems_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("controller.toml");
    std::fs::write(
        &file,
        "[api]\nlisten = \"127.0.0.1:1\"\n\n[links]\nqber_threshold = \"high\"\n",
    )
    .unwrap();
    let (code, err) = run(&file);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{}:5: links.qber_threshold", file.display())), "{err}");
    // An API that authenticates nobody is refused, unless the loopback escape hatch is set.
    std::fs::write(&file, "[api]\nlisten = \"127.0.0.1:1\"\n").unwrap();
    let (code, err) = run(&file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("api.tls: missing: nobody calling 127.0.0.1:1 would be authenticated"),
        "{err}"
    );
    std::fs::write(
        &file,
        "[api]\nlisten = \"127.0.0.1:1\"\ntokens = [{ name = \"ci\", role = \"root\", sha256 = \"00\" }]\n",
    )
    .unwrap();
    let (code, err) = run(&file);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("api.tokens"), "{err}");
    std::fs::write(
        &file,
        "[api]\nlisten = \"0.0.0.0:8450\"\n[[static_agents]]\nrestconf_url = \"ftp://x\"\n",
    )
    .unwrap();
    let (code, err) = run(&file);
    assert_eq!(code, 2);
    assert!(
        err.contains("api.listen: 0.0.0.0:8450: plain HTTP is allowed on loopback only"),
        "{err}"
    );
    assert!(err.contains("static_agents[0].restconf_url"), "{err}");
    std::fs::write(&file, "[api\n").unwrap();
    let (code, err) = run(&file);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("{}:1: not valid TOML", file.display())), "{err}");
}

#[test]
fn it_starts_serves_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (api, management) = (free_port(), free_port());
    let file = dir.path().join("controller.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = \"{}\"\ninsecure_allow_unauthenticated = true\n[api]\nlisten = \"127.0.0.1:{api}\"\n[management]\nlisten = \"127.0.0.1:{management}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qkdn-controller"))
        .arg("--config")
        .arg(&file)
        .args(["--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let get = |port: u16, path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        use std::io::Write;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(management, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let doc = get(api, "/api/v1/openapi.json").unwrap();
    assert!(doc.starts_with("HTTP/1.1 200") && doc.contains("\"openapi\": \"3.1.0\""), "{doc}");
    let missing = get(api, "/api/v1/nodes/00000000-0000-4000-8000-000000000009").unwrap();
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("application/problem+json"),
        "{missing}"
    );
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");
    assert!(dir.path().join("data/controller.redb").exists());
    // --log-format json: every line is a JSON object a collector can read.
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.lines().count() >= 2, "{log}");
    // The escape hatch is announced loudly.
    assert!(log.contains("INSECURE"), "{log}");
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(entry["level"].is_string() && entry["timestamp"].is_string(), "{line}");
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/controller/controller.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-controller"))
        .arg("check-config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[agents]\nloss_timeout = \"soon\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-controller"))
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("agents.loss_timeout"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
