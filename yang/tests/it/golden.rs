//! Golden request/response fixtures (`yang/tests/golden/*.json`): each fixture starts a server
//! on its data and plays its steps over real HTTP, comparing status, the headers that matter and
//! the body. After every error response the datastore must be exactly as before.
//!
//! `QKDN_BLESS=1 cargo test -p qkdn-yang --test it golden` rewrites the expected responses from
//! what the server answers (review the diff before committing).
//!
//! Fixture format: `{"description", "data": <file> | {inline}, "options": {...}, "steps": [
//! {"name", "request": {"method", "path", "headers", "json" | "text"}, "capture": <var>,
//! "response": {"status", "headers", "json" | "text"}}]}`. Header values `<present>` and
//! `<absent>` match any value or none; `{var}` in request headers is replaced by the ETag a
//! previous step captured. The server's address in bodies is recorded as `http://{server}`.

use std::collections::HashMap;

use qkdn_yang::restconf::RestconfOptions;
use serde_json::{Map, Value as Json, json};

use super::harness::{TestServer, fingerprint, read_json, repo_root};

/// Response headers recorded in fixtures.
const HEADERS: &[&str] = &[
    "content-type",
    "allow",
    "accept-patch",
    "location",
    "cache-control",
    "etag",
    "last-modified",
];

/// Headers whose value changes between runs: fixtures only say whether they are there.
const VOLATILE: &[&str] = &["etag", "last-modified"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_fixtures() {
    let dir = repo_root().join("yang/tests/golden");
    let bless = std::env::var("QKDN_BLESS").is_ok_and(|v| v == "1");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "golden fixtures are missing");
    let mut failures = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).expect("read fixture");
        let mut fixture: Json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        match run_fixture(&mut fixture, bless).await {
            Ok(()) => {}
            Err(e) => failures.push(format!("{file}: {e}")),
        }
        if bless {
            std::fs::write(&path, serde_json::to_string_pretty(&fixture).unwrap() + "\n")
                .expect("write fixture");
        }
    }
    assert!(failures.is_empty(), "golden fixtures failed:\n{}", failures.join("\n"));
}

async fn run_fixture(fixture: &mut Json, bless: bool) -> Result<(), String> {
    let data = match &fixture["data"] {
        Json::String(file) => read_json(file),
        Json::Null => json!({}),
        inline => inline.clone(),
    };
    let unprefixed = fixture["options"]["unprefixed_top_level"].as_bool().unwrap_or(false);
    let options =
        RestconfOptions { unprefixed_top_level: unprefixed, ..RestconfOptions::default() };
    let server =
        TestServer::start_with(data, options, |b| b.stream("NETCONF", "golden stream")).await;
    let http = server.http();
    let mut vars: HashMap<String, String> = HashMap::new();
    let steps = fixture["steps"].as_array_mut().ok_or("no steps")?;
    for (i, step) in steps.iter_mut().enumerate() {
        let name = step["name"].as_str().unwrap_or("").to_owned();
        let req = &step["request"];
        let method =
            reqwest::Method::from_bytes(req["method"].as_str().unwrap_or("GET").as_bytes())
                .map_err(|e| format!("step {i}: {e}"))?;
        let mut builder = http.request(method, server.url(req["path"].as_str().unwrap_or("/")));
        if let Some(headers) = req["headers"].as_object() {
            for (k, v) in headers {
                let mut value = v.as_str().unwrap_or("").to_owned();
                for (var, captured) in &vars {
                    value = value.replace(&format!("{{{var}}}"), captured);
                }
                builder = builder.header(k.as_str(), value);
            }
        }
        if let Some(body) = req.get("json") {
            builder = builder.body(body.to_string());
        } else if let Some(text) = req["text"].as_str() {
            builder = builder.body(text.to_owned());
        }
        let before = fingerprint(&server.ds);
        let response = builder.send().await.map_err(|e| format!("step {i} ({name}): {e}"))?;
        let status = response.status().as_u16();
        let mut headers = Map::new();
        for h in HEADERS {
            if let Some(v) = response.headers().get(*h) {
                let v = v.to_str().unwrap_or("").to_owned();
                if step["capture"].as_str().is_some() && *h == "etag" {
                    vars.insert(step["capture"].as_str().unwrap().to_owned(), v.clone());
                }
                let recorded = if VOLATILE.contains(h) { "<present>".to_owned() } else { v };
                headers.insert((*h).to_owned(), Json::String(recorded));
            }
        }
        let text =
            response.text().await.unwrap_or_default().replace(&server.base, "http://{server}");
        let body = if text.is_empty() {
            Json::Null
        } else {
            serde_json::from_str::<Json>(&text).unwrap_or(Json::String(text.clone()))
        };
        if status >= 400 {
            let after = fingerprint(&server.ds);
            if before != after {
                return Err(format!("step {i} ({name}): error {status} changed the datastore"));
            }
            if body.is_null() {
                return Err(format!("step {i} ({name}): error {status} without a body"));
            }
        }
        let actual = json!({"status": status, "headers": headers, "body": body});
        if bless {
            step["response"] = actual;
            continue;
        }
        let expected = &step["response"];
        if expected["status"] != actual["status"] {
            return Err(format!(
                "step {i} ({name}): status {} != expected {}; body {}",
                actual["status"], expected["status"], actual["body"]
            ));
        }
        if let Some(expected_headers) = expected["headers"].as_object() {
            for (k, v) in expected_headers {
                let got = actual["headers"].get(k);
                let ok = match v.as_str() {
                    Some("<absent>") => got.is_none(),
                    Some("<present>") => got.is_some(),
                    _ => got == Some(v),
                };
                if !ok {
                    return Err(format!(
                        "step {i} ({name}): header {k}: got {got:?}, expected {v}"
                    ));
                }
            }
            for k in actual["headers"].as_object().unwrap().keys() {
                if !expected_headers.contains_key(k) {
                    return Err(format!("step {i} ({name}): unexpected header {k}"));
                }
            }
        }
        if expected["body"] != actual["body"] {
            return Err(format!(
                "step {i} ({name}): body differs\n  expected {}\n  actual   {}",
                expected["body"], actual["body"]
            ));
        }
    }
    Ok(())
}
