//! The `qkdn-orchestrator` program: configuration problems are named and stop it with status
//! 2; a configuration without domains starts it, serves its OpenAPI document, and SIGTERM stops
//! it cleanly.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn configuration_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.toml");
    std::fs::write(
        &file,
        "[[domains]]\nname = \"one\"\nurl = \"ftp://x\"\n[[domains]]\nname = \"one\"\nurl = \"http://127.0.0.1:1\"\n\
         [[inter_domain_links]]\nid = \"00000000-0000-4000-8000-000000000001\"\na = [\"one\", \"00000000-0000-4000-8000-000000000002\"]\n\
         b = [\"nowhere\", \"00000000-0000-4000-8000-000000000003\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-orchestrator"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "domains[0].url",
        "domains[1].name: \"one\" is used by another domain",
        "inter_domain_links[0].b: no domain named \"nowhere\"",
        // Plain HTTP on loopback authenticates nobody: refused without the escape hatch.
        "api.tls: missing: nobody calling 127.0.0.1:8460 would be authenticated",
    ] {
        assert!(err.contains(expected), "{expected} missing in: {err}");
    }
}

#[test]
fn it_starts_serves_and_stops_cleanly() {
    let (api, management) = (free_port(), free_port());
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qkdn-orchestrator"))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--management-listen",
            &format!("127.0.0.1:{management}"),
        ])
        // Plain HTTP on loopback, open to every caller (development only).
        .env("QKDN_INSECURE_ALLOW_UNAUTHENTICATED", "true")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !get(management, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "not up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let doc = get(api, "/api/v1/openapi.json").unwrap();
    assert!(doc.contains("\"openapi\": \"3.1.0\""), "{doc}");
    let missing = get(api, "/api/v1/domains/nowhere").unwrap();
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("application/problem+json"),
        "{missing}"
    );
    assert!(
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success()
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_example_configuration_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/orchestrator/orchestrator.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-orchestrator"))
        .arg("check-config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
