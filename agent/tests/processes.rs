//! The agent as a real process: keys, RESTCONF, persistence, notifications, registration,
//! configuration errors and signals.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use qkdn_yang::YangContext;
use qkdn_yang::restconf::RestconfClient;
use qkdn_yang::restconf::client::{Backoff, StreamEvent};
use serde_json::{Value as Json, json};

const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NODE_A: &str = "00000001-0000-0000-0000-000000000000";
const NODE_B: &str = "00000002-0000-0000-0000-000000000000";
const LINK_AB: &str = "a0b00000-0000-4000-8000-000000000001";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A running agent process.
struct AgentProcess {
    child: Child,
    restconf: u16,
    management: u16,
    config: PathBuf,
    data: PathBuf,
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test settings of an agent: ports, directory, and the configuration body (without the
/// sections the harness writes: data_dir, restconf, management).
struct Spec<'a> {
    dir: &'a Path,
    name: &'a str,
    body: String,
    /// Extra lines of the `[restconf]` section.
    restconf_extra: &'a str,
}

fn epoch_now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(1)).to_string()
}

fn start(spec: &Spec<'_>) -> AgentProcess {
    let (restconf, management) = (free_port(), free_port());
    let data = spec.dir.join(format!("{}-data", spec.name));
    let config = spec.dir.join(format!("{}.toml", spec.name));
    let text = format!(
        "data_dir = \"{}\"\n{}\n[restconf]\nlisten = \"127.0.0.1:{restconf}\"\n{}\n[management]\nlisten = \"127.0.0.1:{management}\"\n",
        data.display(),
        spec.body,
        spec.restconf_extra,
    );
    std::fs::write(&config, text).unwrap();
    launch(config, data, restconf, management)
}

fn launch(config: PathBuf, data: PathBuf, restconf: u16, management: u16) -> AgentProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_qkdn-agent"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start qkdn-agent");
    let agent = AgentProcess { child, restconf, management, config, data };
    wait_ready(&agent);
    agent
}

fn relaunch(old: AgentProcess) -> AgentProcess {
    let (config, data, restconf, management) =
        (old.config.clone(), old.data.clone(), old.restconf, old.management);
    drop(old);
    launch(config, data, restconf, management)
}

fn wait_ready(agent: &AgentProcess) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(200) = status_of(&format!("http://127.0.0.1:{}/readyz", agent.management)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent did not become ready");
}

/// The status of a plain GET, from synchronous code (readiness polling runs before and outside
/// the tests' own runtimes, so it uses a runtime of its own on a separate thread).
fn status_of(url: &str) -> Result<u16, String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            reqwest::get(url).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string())
        })
    })
    .join()
    .map_err(|_| "status thread panicked".to_owned())?
}

fn sim_section(extra: &str) -> String {
    format!(
        "[simulator]\nnetwork_secret = \"{SECRET}\"\nepoch = \"{}\"\ntime_scale = 10.0\nslot = \"1s\"\n{extra}\n",
        epoch_now()
    )
}

fn node_ab(
    node: &str,
    iface: u32,
    remote: &str,
    remote_iface: u32,
    extra_sim: &str,
    extra: &str,
) -> String {
    format!(
        r#"[node]
id = "{node}"
{extra}
[notifications]
performance_period = "300ms"

{sim}
[[interfaces]]
id = {iface}
technology = "DV-QKD"
[interfaces.device]
driver = "simulator"
pulse_rate_hz = 1.0e7

[[links]]
id = "{LINK_AB}"
local_interface = {iface}
remote_node = "{remote}"
remote_interface = {remote_iface}
wavelength = 20
role = "TRANSMITTER"
length_km = 25.0
"#,
        sim = sim_section(extra_sim)
    )
}

async fn ledger(agent: &AgentProcess) -> Json {
    reqwest::get(format!("http://127.0.0.1:{}/v1/links/{LINK_AB}/keys", agent.management))
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Json::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agent_processes_deliver_identical_key_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let b = start(&Spec {
        dir: dir.path(),
        name: "b",
        body: node_ab(NODE_B, 201, NODE_A, 101, "", ""),
        restconf_extra: "",
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (la, lb) = (ledger(&a).await, ledger(&b).await);
        let seqs = |l: &Json| -> Vec<(u64, Json)> {
            l["recent"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| (r["sequence"].as_u64().unwrap(), r.clone()))
                .collect()
        };
        let (ra, rb) = (seqs(&la), seqs(&lb));
        let common: Vec<&(u64, Json)> =
            ra.iter().filter(|(s, _)| rb.iter().any(|(t, _)| t == s)).collect();
        if common.len() >= 5 {
            for (seq, record) in common {
                let other = &rb.iter().find(|(t, _)| t == seq).unwrap().1;
                assert_eq!(record, other, "block {seq} differs between the two ends");
                assert!(record["keys"].as_u64().unwrap() > 0);
            }
            return;
        }
        assert!(Instant::now() < deadline, "not enough common blocks: {la} / {lb}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn restconf(agent: &AgentProcess) -> RestconfClient {
    RestconfClient::new(&format!("http://127.0.0.1:{}", agent.restconf))
}

const NODE_PATH: &str = "/etsi-qkd-sdn-node:qkd_node";
const VIRT: &str = "c0c00000-0000-4000-8000-000000000009";
const APP: &str = "aaaa0000-0000-4000-8000-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restconf_writes_are_checked_for_meaning_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let client = restconf(&agent);
    let virt = json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": VIRT, "qkdl_type": "etsi-qkd-node-types:VIRT",
        "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": [NODE_B], "virt_bandwidth": 1000}]});
    assert!(
        client.put(&format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}"), &virt).await.unwrap().created
    );
    let before = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    // Meaning checks: each refusal names the reason and changes nothing.
    let refusals = [
        (
            format!("{NODE_PATH}/qkd_links/qkd_link=d0000000-0000-4000-8000-000000000001"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "d0000000-0000-4000-8000-000000000001", "qkdl_type": "etsi-qkd-node-types:VIRT",
                "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": ["00000003-0000-0000-0000-000000000000"]}]}),
            "not a neighbour",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link=d0000000-0000-4000-8000-000000000002"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": "d0000000-0000-4000-8000-000000000002", "qkdl_type": "etsi-qkd-node-types:PHYS",
                "qkdl_local": {"qkdi_id": 999}, "qkdl_remote": {"qkdn_id": NODE_B, "qkdi_id": 7}}]}),
            "no local interface 999",
        ),
        (
            format!("{NODE_PATH}/qkd_applications/qkd_app={APP}"),
            json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP, "backing_qkdl_id": ["eeee0000-0000-4000-8000-000000000001"]}]}),
            "no link eeee0000",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": VIRT, "qkdl_type": "etsi-qkd-node-types:VIRT",
                "qkdl_remote": {"qkdn_id": "00000003-0000-0000-0000-000000000000"}, "virt_next_hop": [NODE_B], "virt_bandwidth": 900000000}]}),
            "does not fit",
        ),
        (
            format!("{NODE_PATH}/qkd_interfaces/qkd_interface=101"),
            json!({"etsi-qkd-sdn-node:qkd_interface": [{"qkdi_id": 101, "qkdi_model": "other"}]}),
            "interfaces are defined by the agent's configuration",
        ),
        (
            format!("{NODE_PATH}/qkd_links/qkd_link={LINK_AB}"),
            json!({"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": LINK_AB, "qkdl_type": "etsi-qkd-node-types:PHYS", "phys_wavelength": "30"}]}),
            "defined by the agent's configuration",
        ),
    ];
    for (path, body, reason) in refusals {
        let err = client.put(&path, &body).await.unwrap_err();
        let message = err.first_error().and_then(|e| e.error_message.clone()).unwrap_or_default();
        assert!(message.contains(reason), "{path}: expected \"{reason}\", got {err}");
        assert!(matches!(err.status(), Some(400 | 409)));
    }
    assert_eq!(
        client.get(NODE_PATH, &[("content", "config")]).await.unwrap(),
        before,
        "refusals changed nothing"
    );
    let app = json!({"etsi-qkd-sdn-node:qkd_app": [{"app_id": APP, "app_type": "etsi-qkd-node-types:CLIENT",
        "server_app_id": "sae-a", "client_app_id": ["sae-c"], "backing_qkdl_id": [VIRT], "app_qos": {"max_bandwidth": 500}}]});
    assert!(
        client
            .put(&format!("{NODE_PATH}/qkd_applications/qkd_app={APP}"), &app)
            .await
            .unwrap()
            .created
    );
    let err = client.delete(&format!("{NODE_PATH}/qkd_links/qkd_link={VIRT}")).await.unwrap_err();
    assert!(err.to_string().contains("backs application"), "{err}");
    let created = creation_time(&client).await;
    assert!(created.is_string());

    // kill -9 right after acknowledged writes: they are there after the restart.
    let config_before = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    let mut agent = agent;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let agent = relaunch(agent);
    let client = restconf(&agent);
    let after = client.get(NODE_PATH, &[("content", "config")]).await.unwrap();
    let links = |doc: &Json| -> Vec<String> {
        let mut ids: Vec<String> = doc["etsi-qkd-sdn-node:qkd_node"]["qkd_links"]["qkd_link"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["qkdl_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(links(&after), links(&config_before));
    assert_eq!(
        after["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"],
        config_before["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]
    );
    let created_after = creation_time(&client).await;
    assert_eq!(created, created_after, "creation_time survives restarts");
}

/// The application's `creation_time`: operational state, written by the agent right after the
/// commit that created the application, so it may take a moment to appear.
async fn creation_time(client: &RestconfClient) -> Json {
    let path = format!("{NODE_PATH}/qkd_applications/qkd_app={APP}/creation_time");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.get(&path, &[]).await {
            Ok(doc) => return doc["etsi-qkd-sdn-node:creation_time"].clone(),
            Err(e) if Instant::now() > deadline => panic!("no creation_time: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Collects notifications from an agent's stream in the background.
fn collect(agent: &AgentProcess) -> (Arc<Mutex<Vec<Json>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = restconf(agent);
    let store = seen.clone();
    let task = tokio::spawn(async move {
        let mut sub = client.subscribe(
            "NETCONF",
            Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(200) },
        );
        while let Some(event) = sub.next().await {
            if let StreamEvent::Notification(n) = event {
                store.lock().unwrap().push(n);
            }
        }
    });
    (seen, task)
}

fn names(seen: &[Json]) -> Vec<String> {
    seen.iter().filter_map(|n| n.as_object()?.keys().find(|k| *k != "eventTime").cloned()).collect()
}

async fn wait_for(seen: &Arc<Mutex<Vec<Json>>>, what: impl Fn(&[Json]) -> bool, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what(&seen.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out; notifications so far: {:?}", names(&seen.lock().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_events_raise_valid_notifications_with_the_right_values() {
    let dir = tempfile::tempdir().unwrap();
    // Simulated time runs 10x; the script: fibre down at 40s, up at 80s, error rate 15% at 120s.
    let events = format!(
        "[[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"40s\"\nkind = \"down\"\n\
         [[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"80s\"\nkind = \"up\"\n\
         [[simulator.events]]\nlink = \"{LINK_AB}\"\nat = \"120s\"\nkind = \"qber\"\nvalue = 0.15\n"
    );
    let agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, &events, ""),
        restconf_extra: "",
    });
    let (seen, _task) = collect(&agent);
    let ctx = YangContext::qkdn().unwrap();
    let down_with = |reason: &'static str| {
        move |s: &[Json]| {
            s.iter().any(|n| {
                n["etsi-qkd-sdn-node:sdqkdn_link_down"]["qkd_link"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(reason))
            })
        }
    };
    wait_for(&seen, down_with("fibre"), Duration::from_secs(20)).await;
    wait_for(
        &seen,
        |s: &[Json]| {
            s.iter().any(|n| {
                n["etsi-qkd-sdn-node:event"]["link"]["qkdl_status"] == "etsi-qkd-node-types:ACTIVE"
            })
        },
        Duration::from_secs(20),
    )
    .await;
    wait_for(&seen, down_with("abort threshold"), Duration::from_secs(20)).await;
    let all = seen.lock().unwrap().clone();
    let kinds = names(&all);
    for expected in [
        "etsi-qkd-sdn-node:sdqkdn_link_perf_update",
        "etsi-qkd-sdn-node:alarm",
        "etsi-qkd-sdn-node:event",
        "etsi-qkd-sdn-node:sdqkdn_link_down",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "no {expected} in {kinds:?}");
    }
    // Every notification is valid against the 015 module, and carries plausible values.
    for n in &all {
        let mut inner = n.clone();
        inner.as_object_mut().unwrap().remove("eventTime");
        qkdn_yang::ly::validate_notification(&ctx, &inner.to_string())
            .unwrap_or_else(|e| panic!("{n}: {e:?}"));
    }
    let perf: Vec<&Json> =
        all.iter().filter_map(|n| n.get("etsi-qkd-sdn-node:sdqkdn_link_perf_update")).collect();
    let skrs: Vec<u64> =
        perf.iter().filter_map(|p| p["qkd_link"]["performance"]["skr"].as_u64()).collect();
    assert!(
        skrs.iter().any(|s| *s > 10_000),
        "a working 25 km link reports tens of kbit/s at 10 MHz: {skrs:?}"
    );
    assert!(skrs.contains(&0), "a cut fibre reports 0: {skrs:?}");
    let alarm = all.iter().find_map(|n| n.get("etsi-qkd-sdn-node:alarm")).unwrap();
    assert_eq!(alarm["link"]["severity"], "etsi-qkd-node-types:MAJOR");
    assert_eq!(alarm["link"]["qkdl_status"], "etsi-qkd-node-types:PASSIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_announces_the_interfaces_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: node_ab(NODE_A, 101, NODE_B, 201, "", ""),
        restconf_extra: "",
    });
    let (seen, _task) = collect(&agent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = agent.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the agent did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    wait_for(
        &seen,
        |s: &[Json]| names(s).iter().any(|k| k == "etsi-qkd-sdn-node:sdqkdn_interface_out"),
        Duration::from_secs(5),
    )
    .await;
}

#[test]
fn an_invalid_configuration_exits_with_the_key_value_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!("data_dir = \"{}\"\n[node]\nid = \"{NODE_A}\"\n[[links]]\nid = \"{LINK_AB}\"\nlocal_interface = 7\nremote_node = \"{NODE_B}\"\nremote_interface = 1\nwavelength = 20\nrole = \"TRANSMITTER\"\nlength_km = 1.0\n", dir.path().display()),
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_qkdn-agent")).arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6: links[0].local_interface: 7: no such interface",
            file.display()
        )),
        "{err}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_qkdn-agent"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    // Environment variables override the file, with the variable named in errors.
    let out = Command::new(env!("CARGO_BIN_EXE_qkdn-agent"))
        .arg("--config")
        .arg(&file)
        .env("QKDN_NODE__ID", "not-a-uuid")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("QKDN_NODE__ID"), "{err}");
    // The example network's files are valid.
    for node in ["a", "b", "c"] {
        let example = repo().join(format!("deploy/agents/node-{node}.toml"));
        let ok = Command::new(env!("CARGO_BIN_EXE_qkdn-agent"))
            .arg("check-config")
            .arg(&example)
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    }
}
