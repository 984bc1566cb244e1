//! The container deployment (deploy/containers, deploy/compose), where Docker is available:
//! the images are built FROM scratch from the test build's binaries, compose brings up a
//! controller, an orchestrator and four agents on a private network with the PKI that
//! `deploy/compose/pki` makes; an application from sae-a at A to sae-c at C gets identical keys
//! relayed through a trusted node; stopping that node's container raises the agent-lost alarm
//! and the application moves round the ring, keys still flowing; everything is torn down.
//! Without Docker the test says so and passes, unless `QKDN_REQUIRE_DOCKER` is set
//! (scripts/test sets it when a Docker client is installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use qkdn_tests::process::{binary, free_port, repo, test_dir};
use serde_json::{Value as Json, json};

/// `docker compose` (v2) or `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|o| o.status.success()) {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A compose project, torn down (containers, network, volumes, images) when dropped.
struct Project {
    name: String,
    tag: String,
    env: Vec<(String, String)>,
    command: Vec<String>,
}

impl Project {
    /// The compose command for `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .args(["-p", &self.name, "-f"])
            .arg(repo().join("deploy/compose/compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "compose {args:?}: {text}");
        text
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.command(&["logs", "--tail", "30"]).status();
        }
        let _ = self.command(&["down", "-v", "--timeout", "5"]).output();
        for service in ["agent", "controller", "orchestrator"] {
            let image = format!("qkdn-{service}:{}", self.tag);
            let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
        }
    }
}

fn client(pki: &Path, name: &str) -> reqwest::Client {
    let (cert, key) = (pki.join(format!("{name}.crt")), pki.join(format!("{name}.key")));
    qkdn_tests::pki::https_client(&pki.join("ca.crt"), Some((&cert, &key)))
}

async fn get(client: &reqwest::Client, url: &str) -> Json {
    match client.get(url).send().await {
        Ok(r) => serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Json::Null),
        Err(_) => Json::Null,
    }
}

async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    seconds: u64,
    what: impl Fn(&Json) -> bool,
) -> Json {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let body = get(client, url).await;
        if what(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{url}: not as expected in {seconds} s: {body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// POST `body` as JSON: (status, JSON answer).
async fn post(client: &reqwest::Client, url: &str, body: &Json) -> (u16, Json) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Json::Null))
}

/// enc_keys for sae-a at A, dec_keys of the same key for sae-c at C: identical.
async fn relayed_key(pki: &Path, kms_a: u16, kms_c: u16) {
    let (a, c) = (client(pki, "sae-a"), client(pki, "sae-c"));
    let url = format!("https://localhost:{kms_a}/api/v1/keys/sae-c/enc_keys?number=1");
    let keys = wait_for(&a, &url, 30, |b| b["keys"].as_array().is_some_and(|k| k.len() == 1)).await;
    let key = &keys["keys"][0];
    let body = json!({"key_IDs": [{"key_ID": key["key_ID"]}]});
    let url = format!("https://localhost:{kms_c}/api/v1/keys/sae-a/dec_keys");
    let got = post(&c, &url, &body).await.1;
    assert_eq!(got["keys"][0], *key, "the same key at A and C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_relay_keys_and_report_a_stopped_agent() {
    if !docker_available() {
        assert!(
            std::env::var_os("QKDN_REQUIRE_DOCKER").is_none(),
            "QKDN_REQUIRE_DOCKER is set but the Docker daemon does not answer"
        );
        eprintln!("compose test skipped: no Docker daemon here");
        return;
    }
    let dir = test_dir();
    let pki = dir.path().join("pki");
    let made = Command::new(repo().join("deploy/compose/pki"))
        .arg(&pki)
        .env("QKDN", binary("qkdn"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let tag = format!("test{}", std::process::id());
    let binaries: PathBuf = binary("qkdn-agent").parent().unwrap().to_path_buf();
    let built = Command::new(repo().join("deploy/containers/build"))
        .args(["--tag", &tag, "--binaries"])
        .arg(&binaries)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );

    let (api, metrics, orchestrator, kms_a, kms_c) =
        (free_port(), free_port(), free_port(), free_port(), free_port());
    let env = [
        ("QKDN_TAG", tag.clone()),
        ("QKDN_PKI", pki.display().to_string()),
        ("QKDN_CONTROLLER_PORT", api.to_string()),
        ("QKDN_CONTROLLER_METRICS_PORT", metrics.to_string()),
        ("QKDN_ORCHESTRATOR_PORT", orchestrator.to_string()),
        ("QKDN_KMS_A_PORT", kms_a.to_string()),
        ("QKDN_KMS_C_PORT", kms_c.to_string()),
    ];
    let project = Project {
        name: format!("qkdntest{}", std::process::id()),
        tag: tag.clone(),
        env: env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
        command: compose_command(),
    };
    project.run(&["up", "-d"]);

    // The read-only, non-root containers: the controller sees four nodes and four links up.
    let operator = client(&pki, "operator");
    let rest = format!("https://localhost:{api}/api/v1");
    wait_for(&operator, &format!("{rest}/nodes"), 120, |b| {
        b["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 4 && n.iter().all(|x| x["reachable"] == true))
    })
    .await;
    wait_for(&operator, &format!("{rest}/links"), 60, |b| {
        b["links"].as_array().is_some_and(|l| {
            l.len() == 4 && l.iter().all(|x| x["up"] == true && x["skr_bps"].as_u64() > Some(0))
        })
    })
    .await;
    let (a, c) = ("00000001-0000-4000-8000-0000000000c0", "00000003-0000-4000-8000-0000000000c0");
    let app = json!({"app_id": "5e1f0000-0000-4000-8000-0000000000c0", "server": {"sae_id": "sae-a", "node": a},
        "clients": [{"sae_id": "sae-c", "node": c}], "qos": {"rate_bps": 2000}});
    let (status, created) = post(&operator, &format!("{rest}/applications"), &app).await;
    assert_eq!(status, 201, "{created}");
    let path = created["legs"][0]["nodes"].as_array().unwrap().clone();
    assert_eq!(path.len(), 3, "A -> C is relayed through B or D: {created}");
    relayed_key(&pki, kms_a, kms_c).await;

    // Metrics of the controller from the host; of the agents inside the network.
    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("qkdn_controller_agents_reachable 4"), "{text}");
    let orchestrator_nodes =
        wait_for(&operator, &format!("https://localhost:{orchestrator}/api/v1/network"), 30, |b| {
            b["nodes"].as_array().is_some_and(|n| n.len() == 4)
        })
        .await;
    assert_eq!(orchestrator_nodes["links"].as_array().map(Vec::len), Some(4));

    // Stop the relaying node's container: the alarm, then the application round the other way.
    let middle = path[1].as_str().unwrap().to_owned();
    let service = if middle.starts_with("00000002") { "agent-b" } else { "agent-d" };
    project.run(&["stop", "--timeout", "5", service]);
    let events = wait_for(&operator, &format!("{rest}/events"), 60, |b| {
        b["events"].as_array().is_some_and(|e| {
            e.iter().any(|x| x["kind"] == "agent-lost" && x["subject"]["node"] == json!(middle))
        })
    })
    .await;
    let alarm = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "agent-lost")
        .unwrap()
        .clone();
    assert_eq!(alarm["severity"], "MAJOR", "{alarm}");
    let moved = wait_for(
        &operator,
        &format!("{rest}/applications/5e1f0000-0000-4000-8000-0000000000c0"),
        60,
        |b| {
            b["state"] == "active"
                && b["legs"][0]["nodes"]
                    .as_array()
                    .is_some_and(|n| n.len() == 3 && n[1] != json!(middle))
        },
    )
    .await;
    assert_ne!(moved["legs"][0]["nodes"][1], json!(middle));
    relayed_key(&pki, kms_a, kms_c).await;
    drop(project);
    let left = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project=qkdntest{}", std::process::id()),
        ])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "containers left: {}", String::from_utf8_lossy(&left.stdout));
}
