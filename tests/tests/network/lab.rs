//! `qkdn lab up` as an operator or a script runs it: without a terminal, in a fresh data
//! directory. It must print progress, write `lab.json` once the network is up, and that file
//! must be enough for curl (RESTCONF, metrics, ETSI 014 with the SAE certificates) and for the
//! `qkdn` commands to use the lab: the demo application between non-adjacent nodes gives
//! identical keys at both ends. SIGTERM (or SIGHUP, a closed terminal) stops every process and
//! removes `lab.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qkdn_tests::process::{binary, free_port_block, test_dir};
use qkdn_yang::YangContext;
use qkdn_yang::ly::{Content, validate_data};
use qkdn_yang::modules::{EmbeddedModule, QKDN_MODULES};
use serde_json::Value as Json;

/// A running `qkdn lab up`; stopped with SIGTERM when dropped.
struct Lab {
    child: Child,
    output: PathBuf,
    dir: PathBuf,
    base_port: u16,
}

impl Lab {
    fn start(topology: &str, dir: &Path) -> Lab {
        Lab::start_at(topology, dir, free_port_block(80))
    }

    /// Starts the lab in `dir` with its ports from `base_port`.
    fn start_at(topology: &str, dir: &Path, base_port: u16) -> Lab {
        let output = dir.join("lab-output.txt");
        let data = dir.join("data");
        let child = Command::new(binary("qkdn"))
            .args(["lab", "up", topology, "--data-dir"])
            .arg(&data)
            .args(["--base-port", &base_port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(std::fs::File::create(dir.join("lab-errors.txt")).unwrap())
            .spawn()
            .unwrap();
        Lab { child, output, dir: data, base_port }
    }

    fn output(&self) -> String {
        let err = std::fs::read_to_string(self.output.with_file_name("lab-errors.txt"))
            .unwrap_or_default();
        std::fs::read_to_string(&self.output).unwrap_or_default() + &err
    }

    /// Waits for this lab's `lab.json` (not one a killed lab left) and reads it.
    fn wait_ready(&mut self) -> Json {
        let file = self.dir.join("lab.json");
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Ok(lab) = serde_json::from_str::<Json>(&text)
                && lab["pid"] == self.child.id()
            {
                return lab;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("qkdn lab up ended ({status}):\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "no lab.json in 150 s:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.stop_with(rustix::process::Signal::TERM)
    }

    /// Sends `signal` and waits for the lab to end.
    fn stop_with(&mut self, signal: rustix::process::Signal) -> std::process::ExitStatus {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "qkdn lab up did not stop:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// curl with `args`; its output as text (panics when curl fails).
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// curl's output for a request that may fail (with `-w %{http_code}` the status comes last).
fn curl_any(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "20"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path(v: &Json) -> &str {
    v.as_str().unwrap()
}

/// The service at `restconf` (a RESTCONF root) advertises in `ietf-yang-library` the modules it
/// implements: its whole datastore validates against exactly those (and libyang's own), every
/// one of them is a module qkdn carries, and its operations resource lists every RPC they
/// define.
fn check_advertised_modules(lab: &Json, restconf: &str) {
    let tls = [
        "--cacert",
        path(&lab["ca_cert"]),
        "--cert",
        path(&lab["client"]["cert"]),
        "--key",
        path(&lab["client"]["key"]),
    ];
    let get =
        |url: &str| -> Json { serde_json::from_str(&curl(&[&tls[..], &[url]].concat())).unwrap() };
    let data = get(&format!("{restconf}/data"));
    let data = &data["ietf-restconf:data"];
    let library = &data["ietf-yang-library:yang-library"]["module-set"][0];
    let implemented: Vec<&str> =
        library["module"].as_array().unwrap().iter().map(|m| path(&m["name"])).collect();
    let built_in = YangContext::from_modules(&[], &[]).unwrap();
    let built_in: Vec<&str> = built_in.schema().modules().iter().map(|m| m.name.as_str()).collect();
    for name in &implemented {
        assert!(
            built_in.contains(name) || QKDN_MODULES.iter().any(|m| m.name == *name),
            "{restconf} claims to implement {name}, a module qkdn does not carry"
        );
    }
    let modules: Vec<EmbeddedModule> =
        QKDN_MODULES.iter().filter(|m| implemented.contains(&m.name)).copied().collect();
    let ctx = YangContext::from_modules(&modules, &[]).unwrap();
    validate_data(&ctx, &data.to_string(), Content::All).unwrap_or_else(|e| {
        panic!("{restconf}/data does not validate against its own modules {implemented:?}: {e}")
    });
    let operations = get(&format!("{restconf}/operations"));
    let listed: Vec<&String> =
        operations["ietf-restconf:operations"].as_object().unwrap().keys().collect();
    let defined: Vec<&String> = ctx.schema().operations().keys().collect();
    assert_eq!(listed, defined, "{restconf}: operations served vs defined by its modules");
}

/// `qkdn --lab FILE ARGS -o json`: (exit code, JSON output).
fn qkdn(lab_json: &Path, args: &[&str]) -> (i32, Json) {
    let out = Command::new(binary("qkdn"))
        .arg("--lab")
        .arg(lab_json)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap_or(Json::Null))
}

/// ETSI 014 through curl: `enc_keys` for the app's master SAE, `dec_keys` for its slave
/// through `qkdn keys get`; the same key at both ends.
fn keys_of_app(lab: &Json, lab_json: &Path, app: &Json) {
    let sae = |id: &Json| {
        lab["saes"].as_array().unwrap().iter().find(|s| s["id"] == *id).unwrap().clone()
    };
    let (master, slave) = (sae(&app["master_sae"]), sae(&app["slave_sae"]));
    let node = lab["nodes"].as_array().unwrap().iter().find(|n| n["id"] == master["node"]).unwrap();
    let url =
        format!("{}/api/v1/keys/{}/enc_keys?number=2", path(&node["kms_014"]), path(&slave["id"]));
    let mut answer = Json::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Relayed keys may need a moment after the application became active.
    while answer["keys"].as_array().is_none_or(|k| k.len() != 2) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                path(&lab["ca_cert"]),
                "--cert",
                path(&master["cert"]),
                "--key",
                path(&master["key"]),
                &url,
            ])
            .output()
            .unwrap();
        answer = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
        assert!(Instant::now() < deadline, "enc_keys at {url}: {answer}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let dec_keys = |key_id: &Json| {
        let args = ["keys", "get", "--sae", path(&slave["id"]), "--peer", path(&master["id"])];
        qkdn(lab_json, &[&args[..], &["--key-id", path(key_id)]].concat())
    };
    for key in answer["keys"].as_array().unwrap() {
        let (code, got) = dec_keys(&key["key_ID"]);
        assert_eq!(code, 0, "{got}");
        assert_eq!(got["keys"][0], *key, "the same key at both ends");
    }
    // A key is handed out once.
    let (code, again) = dec_keys(&answer["keys"][0]["key_ID"]);
    assert_eq!(code, 1, "{again}");
}

/// SKIP through curl and the CLI: the master encryptor takes a key at its node's `kms_skip`
/// with curl, the slave takes it by its keyId with `qkdn keys skip`; the same key.
fn skip_key_of_app(lab: &Json, lab_json: &Path, app: &Json) {
    let sae = |id: &Json| {
        lab["saes"].as_array().unwrap().iter().find(|s| s["id"] == *id).unwrap().clone()
    };
    let (master, slave) = (sae(&app["master_sae"]), sae(&app["slave_sae"]));
    let node = lab["nodes"].as_array().unwrap().iter().find(|n| n["id"] == master["node"]).unwrap();
    let url = format!("{}/key?remoteSystemID={}", path(&node["kms_skip"]), path(&slave["id"]));
    #[rustfmt::skip]
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", path(&lab["ca_cert"]),
            "--cert", path(&master["cert"]), "--key", path(&master["key"]), &url])
        .output()
        .unwrap();
    let taken: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    assert_eq!(taken["key"].as_str().map(str::len), Some(64), "GET {url}: {taken}");
    #[rustfmt::skip]
    let (code, fetched) = qkdn(lab_json, &["keys", "skip", "--sae", path(&slave["id"]),
        "--peer", path(&master["id"]), "--key-id", path(&taken["keyId"])]);
    assert_eq!((code, &fetched), (0, &taken), "the same key at both ends over SKIP");
}

#[test]
fn the_default_lab_is_usable_from_lab_json_with_curl_and_the_cli() {
    let dir = test_dir();
    let mut lab = Lab::start("metro-ring", dir.path());
    let described = lab.wait_ready();
    let lab_json = lab.dir.join("lab.json");
    let output = lab.output();
    for step in [
        "writing certificates",
        "starting controller",
        "waiting for the links",
        "registered",
        "ready; described in",
    ] {
        assert!(output.contains(step), "progress line with {step:?}:\n{output}");
    }
    // Shape (what scripts rely on).
    for key in ["ca_cert", "client", "controller", "nodes", "saes", "apps"] {
        assert!(!described[key].is_null(), "lab.json has {key}: {described}");
    }
    assert!(described.get("orchestrator").is_none(), "one domain, no orchestrator");
    assert_eq!(described["nodes"].as_array().unwrap().len(), 6);
    for file in [&described["ca_cert"], &described["client"]["cert"], &described["client"]["key"]] {
        assert!(Path::new(path(file)).is_absolute() && Path::new(path(file)).exists(), "{file}");
    }

    // curl with the operator's certificate: a node's RESTCONF, the controller's REST and 018.
    let tls = [
        "--cacert",
        path(&described["ca_cert"]),
        "--cert",
        path(&described["client"]["cert"]),
        "--key",
        path(&described["client"]["key"]),
    ];
    let node = &described["nodes"][0];
    let restconf = format!("{}/data/etsi-qkd-sdn-node:qkd_node", path(&node["restconf"]));
    let tree: Json =
        serde_json::from_str(&curl(&[&tls[..], &[restconf.as_str()]].concat())).unwrap();
    assert_eq!(tree["etsi-qkd-sdn-node:qkd_node"]["qkdn_id"], node["id"]);
    let nodes_url = format!("{}/nodes", path(&described["controller"]["rest"]));
    let nodes: Json =
        serde_json::from_str(&curl(&[&tls[..], &[nodes_url.as_str()]].concat())).unwrap();
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 6);
    let network_url = format!(
        "{}/data/etsi-qkd-sdn-topology:qkd_network",
        path(&described["controller"]["restconf"])
    );
    assert!(curl(&[&tls[..], &[network_url.as_str()]].concat()).contains("qkd_network"));
    // Without a client certificate the node refuses.
    let refused = Command::new("curl")
        .args(["-s", "--cacert", path(&described["ca_cert"]), &restconf])
        .output()
        .unwrap();
    assert!(
        !refused.status.success() || !String::from_utf8_lossy(&refused.stdout).contains("qkdn_id")
    );

    // The agent's API (KMS figures) with the operator's certificate.
    let stores_url = format!("{}/v1/kms/stores", path(&node["api"]));
    assert!(curl(&[&tls[..], &[stores_url.as_str()]].concat()).contains("\"stores\""));
    // The attack: an SAE's certificate cannot delete an application at the controller
    // nor a node's applications, and the demo application still serves its SAEs afterwards.
    let sae = &described["saes"].as_array().unwrap()[1];
    let sae_tls = [
        "--cacert",
        path(&described["ca_cert"]),
        "--cert",
        path(&sae["cert"]),
        "--key",
        path(&sae["key"]),
    ];
    let app_url = format!(
        "{}/applications/{}",
        path(&described["controller"]["rest"]),
        path(&described["apps"][0]["id"])
    );
    let apps_url =
        format!("{}/data/etsi-qkd-sdn-node:qkd_node/qkd_applications", path(&node["restconf"]));
    for url in [&app_url, &apps_url] {
        let answer = curl_any(
            &[&sae_tls[..], &["-X", "DELETE", "-w", "%{http_code}", url.as_str()]].concat(),
        );
        assert!(
            answer.ends_with("403") && answer.contains("access denied"),
            "DELETE {url}: {answer}"
        );
    }
    // The lab's secrets are files only their owner reads, and no configuration holds one.
    let pki_dir = Path::new(path(&described["ca_cert"])).parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&pki_dir).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".key") || name == "simulator-secret" {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }
    let secret = std::fs::read_to_string(pki_dir.join("simulator-secret")).unwrap();
    let config_dir = pki_dir.parent().unwrap().join("config");
    for entry in std::fs::read_dir(&config_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains(secret.trim()), "a configuration file holds the simulator secret");
    }

    // Metrics of a node and of the controller.
    let node_metrics = curl(&[path(&node["metrics"])]);
    assert!(node_metrics.contains("qkdn_link_skr_bps{link="), "{node_metrics}");
    assert!(node_metrics.contains("qkdn_key_store_keys{link="), "{node_metrics}");
    let controller_metrics = curl(&[path(&described["controller"]["metrics"])]);
    assert!(
        controller_metrics.contains("qkdn_controller_agents_reachable 6"),
        "{controller_metrics}"
    );
    assert!(
        controller_metrics.contains("qkdn_applications{state=\"active\"} 2"),
        "{controller_metrics}"
    );

    // The CLI: the relayed demo application's path, then its keys at both ends.
    let (code, paths) = qkdn(&lab_json, &["paths"]);
    assert_eq!(code, 0, "{paths}");
    let app = &described["apps"][0];
    let relayed =
        paths["paths"].as_array().unwrap().iter().find(|p| p["application"] == app["id"]).unwrap();
    assert!(relayed["links"].as_array().unwrap().len() >= 2, "A -> D is relayed: {relayed}");
    keys_of_app(&described, &lab_json, app);
    skip_key_of_app(&described, &lab_json, app);
    // The links table shows each link's key stock.
    let table = Command::new(binary("qkdn")).arg("--lab").arg(&lab_json).arg("links").output();
    let table = String::from_utf8_lossy(&table.unwrap().stdout).into_owned();
    assert!(table.contains("KEY STOCK") && table.contains(" keys "), "{table}");
    // ETSI 014 without a lab: the CA, the KMS and the SAE's files given as flags.
    let master =
        described["saes"].as_array().unwrap().iter().find(|s| s["id"] == app["master_sae"]);
    let master = master.unwrap();
    let kms = described["nodes"].as_array().unwrap().iter().find(|n| n["id"] == master["node"]);
    let no_lab = lab.dir.join("no-lab.json");
    #[rustfmt::skip]
    let flags = [
        "keys", "get", "--sae", path(&master["id"]), "--peer", path(&app["slave_sae"]),
        "--ca", path(&described["ca_cert"]), "--kms", path(&kms.unwrap()["kms_014"]),
        "--sae-cert", path(&master["cert"]), "--sae-key", path(&master["key"]),
    ];
    let (code, keys) = qkdn(&no_lab, &flags);
    assert_eq!((code, keys["keys"].as_array().map(Vec::len)), (0, Some(1)), "{keys}");
    let (code, topology) = qkdn(&lab_json, &["topology"]);
    assert_eq!((code, topology["links"].as_array().map(Vec::len)), (0, Some(6)), "{topology}");
    follow_events_while_an_application_comes_and_goes(&lab_json);
    let (code, _) = qkdn(&lab_json, &["apps", "delete", "not-a-uuid"]);
    assert_eq!(code, 1, "a refused request exits with 1");
    let (code, _) = qkdn(&lab.dir.join("missing.json"), &["nodes"]);
    assert_eq!(code, 2, "no lab exits with 2");

    // SIGTERM: everything stops, lab.json goes.
    let status = lab.terminate();
    assert!(status.success(), "{status}:\n{}", lab.output());
    assert!(!lab_json.exists());
    assert!(lab.output().contains("stopped"));
    assert_no_process_left(&lab.dir);
}

#[test]
fn the_two_domain_lab_relays_a_service_through_the_gateway() {
    let dir = test_dir();
    let mut lab = Lab::start("two-domains", dir.path());
    let described = lab.wait_ready();
    let lab_json = lab.dir.join("lab.json");
    let orchestrator = &described["orchestrator"];
    assert!(orchestrator["rest"].as_str().unwrap().starts_with("https://"), "{described}");
    assert_eq!(described["controllers"].as_array().unwrap().len(), 2);
    let service =
        described["apps"].as_array().unwrap().iter().find(|a| a["kind"] == "service").unwrap();
    keys_of_app(&described, &lab_json, service);
    // Every service claims in ietf-yang-library exactly what it serves.
    let mut roots = vec![path(&orchestrator["restconf"])];
    roots.extend(described["controllers"].as_array().unwrap().iter().map(|c| path(&c["restconf"])));
    roots.push(path(&described["nodes"][0]["restconf"]));
    for root in roots {
        check_advertised_modules(&described, root);
    }
    let metrics = curl(&[path(&orchestrator["metrics"])]);
    assert!(metrics.contains("qkdn_domain_up{domain=\"east\"} 1"), "{metrics}");
    assert!(metrics.contains("qkdn_services{status=\"active\"} 1"), "{metrics}");
    // SIGHUP (the terminal closed) stops the lab and all its processes too.
    let status = lab.stop_with(rustix::process::Signal::HUP);
    assert!(status.success(), "{status}:\n{}", lab.output());
    assert_no_process_left(&lab.dir);
}

#[test]
fn a_lab_started_after_a_killed_one_stops_what_that_one_left_running() {
    let dir = test_dir();
    let mut killed = Lab::start("metro-ring", dir.path());
    killed.wait_ready();
    let _ = killed.child.kill(); // SIGKILL: its services keep running, holding the ports
    let _ = killed.child.wait();
    let data = killed.dir.display().to_string();
    let left = Command::new("pgrep").args(["-f", &data]).output().unwrap();
    assert!(!left.stdout.is_empty(), "the services outlive a killed lab");
    let mut again = Lab::start_at("metro-ring", dir.path(), killed.base_port);
    again.wait_ready();
    let output = again.output();
    assert!(output.contains("stopped what a killed lab left running here"), "{output}");
    assert!(again.terminate().success(), "{}", again.output());
    assert_no_process_left(&again.dir);
}

/// No process names the lab's data directory any more.
fn assert_no_process_left(data: &Path) {
    let data = data.display().to_string();
    let left = Command::new("pgrep").args(["-f", &data]).output().unwrap();
    assert!(left.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&left.stdout));
}

/// `qkdn events --follow` prints the events an application's registration and removal raise,
/// as they happen (over the controller's event stream).
fn follow_events_while_an_application_comes_and_goes(lab_json: &Path) {
    let mut follower = Command::new(binary("qkdn"))
        .arg("--lab")
        .arg(lab_json)
        .args(["events", "--follow", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel::<Json>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(serde_json::from_str(&line).unwrap_or(Json::Null));
        }
    });
    let wait_for = |kind: &str, app: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = received.recv_timeout(left).unwrap_or_else(|_| panic!("no {kind} event"));
            if event["kind"] == kind && event.to_string().contains(app) {
                return event;
            }
        }
    };
    let app = "5e1f0000-0000-4000-8000-00000000f011";
    #[rustfmt::skip]
    let register = [
        "apps", "register", "--sae", "sae-follow-1", "--node", "A", "--peer-sae", "sae-follow-2",
        "--peer-node", "C", "--rate-bps", "500", "--id", app,
    ];
    let (code, created) = qkdn(lab_json, &register);
    assert_eq!(code, 0, "{created}");
    wait_for("app-provisioned", app);
    let (code, removed) = qkdn(lab_json, &["apps", "delete", app]);
    assert_eq!(code, 0, "{removed}");
    wait_for("app-removed", app);
    let _ = follower.kill();
    let _ = follower.wait();
}
