//! `qkdn lab up [TOPOLOGY]`: a whole QKD network on this machine. It plans the lab from a
//! topology ([`topology`], [`plan`]), writes a PKI and every configuration into the data
//! directory, starts a controller per domain, one agent per node (simulated devices and KMS)
//! and, with several domains, an orchestrator, as processes on loopback ([`processes`]); waits
//! until every link produces keys; registers the demo applications (relayed where the nodes
//! are not neighbours); writes `lab.json` ([`crate::labfile`]) and prints how to use it; then
//! shows a live status ([`status`]) until SIGINT or SIGTERM, when it stops everything in order
//! and removes `lab.json`.

pub(crate) mod plan;
pub(crate) mod processes;
pub(crate) mod status;
pub(crate) mod topology;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;
use qkdn_kit::process::StopSignals;
use serde_json::json;

use crate::client::Client;
use crate::labfile::{AppEntry, Identity, LabFile, NodeEntry, SaeEntry, ServiceEndpoints};
use plan::{Plan, Registrar};
use processes::LabProcess;
use topology::Topology;

/// The `lab` subcommands.
#[derive(Subcommand)]
pub(crate) enum LabCommand {
    /// Run a lab network until Ctrl-C (or SIGTERM).
    Up {
        /// A built-in topology (metro-ring, nsfnet, two-domains) or a topology file.
        #[arg(default_value = "metro-ring")]
        topology: String,
        /// Where certificates, configurations, state, logs and lab.json go.
        #[arg(long, default_value = "qkdn-lab")]
        data_dir: PathBuf,
        /// The first of the ports the lab listens on (on 127.0.0.1).
        #[arg(long, default_value_t = 8400)]
        base_port: u16,
    },
    /// List the built-in topologies.
    Topologies,
}

/// Exit status when the lab could not start.
const TROUBLE: u8 = 2;

/// Runs a `lab` subcommand (`json`: `topologies` as a JSON array).
pub(crate) fn run(command: LabCommand, json: bool) -> ExitCode {
    match command {
        LabCommand::Topologies => {
            let described = topology::BUILT_IN.iter().map(|(name, text)| {
                let description =
                    Topology::parse(text, name).map(|t| t.description).unwrap_or_default();
                (*name, description)
            });
            if json {
                let list: Vec<_> =
                    described.map(|(n, d)| json!({"name": n, "description": d})).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                described.for_each(|(name, d)| println!("{name:<12} {d}"));
            }
            ExitCode::SUCCESS
        }
        LabCommand::Up { topology, data_dir, base_port } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&e.to_string()),
            };
            match runtime.block_on(up(&topology, &data_dir, base_port)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("qkdn lab: {message}");
    ExitCode::from(TROUBLE)
}

/// Writes to standard output without panicking when it has gone (a closed terminal after
/// SIGHUP, a closed pipe): the lab must still stop its processes.
fn show(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Progress lines (the same on a terminal and off one).
fn say(text: &str) {
    show(&format!("qkdn lab: {text}\n"));
}

async fn up(topology_arg: &str, data_dir: &Path, base_port: u16) -> Result<(), String> {
    // SIGHUP too: a closed terminal stops the lab rather than orphaning its processes.
    let mut signals =
        StopSignals::listen(true).map_err(|e| format!("listening for signals: {e}"))?;
    let topology = Topology::load(topology_arg)?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let dir =
        std::fs::canonicalize(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let plan = Plan::new(&topology, &dir, base_port)?;
    let lab_json = dir.join("lab.json");
    if let Ok(old) = LabFile::read(&lab_json)
        && Path::new(&format!("/proc/{}", old.pid)).exists()
    {
        return Err(format!(
            "{}: a lab is already running here (pid {})",
            lab_json.display(),
            old.pid
        ));
    }
    let _ = std::fs::remove_file(&lab_json);
    let left = processes::stop_leftovers(&dir);
    if !left.is_empty() {
        say(&format!("stopped what a killed lab left running here: {}", left.join(", ")));
    }
    for port in plan.ports() {
        std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
            format!("port {port} on 127.0.0.1: {e} (another lab running? choose other ports with --base-port)")
        })?;
    }
    say(&format!(
        "topology {} ({} nodes, {} links, {} domain{}), data in {}",
        topology.name,
        plan.nodes.len(),
        plan.links.len(),
        plan.controllers.len(),
        if plan.controllers.len() == 1 { "" } else { "s" },
        dir.display()
    ));
    say("writing certificates and configurations");
    plan.write()?;
    let lab = describe(&plan);
    let mut running = Vec::new();
    let started = tokio::select! {
        r = start(&plan, &lab, &mut running) => r,
        _ = signals.received() => Err("interrupted while starting".to_owned()),
    };
    if let Err(e) = started {
        stop(&mut running);
        let _ = std::fs::remove_file(processes::pids_file(&dir));
        return Err(e);
    }
    let text = serde_json::to_string_pretty(&lab).map_err(|e| e.to_string())?;
    let partial = dir.join("lab.json.new");
    std::fs::write(&partial, text + "\n")
        .and_then(|()| std::fs::rename(&partial, &lab_json))
        .map_err(|e| format!("{}: {e}", lab_json.display()))?;
    say(&format!("ready; described in {}", lab_json.display()));
    show(&hints(&lab));
    watch(&plan, &lab, &mut running, &mut signals).await;
    show("\n");
    say("stopping");
    stop(&mut running);
    let _ = std::fs::remove_file(&lab_json);
    let _ = std::fs::remove_file(processes::pids_file(&dir));
    say("stopped");
    Ok(())
}

/// Starts every service, waits for the network and registers the demo applications.
async fn start(plan: &Plan, lab: &LabFile, running: &mut Vec<LabProcess>) -> Result<(), String> {
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let launch = |name: &str, program: &str, management: u16| {
        let readyz = format!("http://127.0.0.1:{management}/readyz");
        let (config, log) = (plan.config_file(name), plan.log_file(name));
        LabProcess::start(name, program, &config, &log, readyz, &processes::pids_file(&plan.dir))
    };
    for c in &plan.controllers {
        let name = plan.controller_name(&c.domain);
        say(&format!("starting {name} (REST and ETSI 018 on https://localhost:{})", c.ports.api));
        running.push(launch(&name, "qkdn-controller", c.ports.management)?);
    }
    say(&format!("starting {} agents with simulated QKD devices and their KMSs", plan.nodes.len()));
    for n in &plan.nodes {
        running.push(launch(&Plan::agent_name(&n.name), "qkdn-agent", n.ports.management)?);
    }
    if let Some(o) = plan.orchestrator {
        say(&format!(
            "starting the orchestrator (REST and ETSI 018 on https://localhost:{})",
            o.api
        ));
        running.push(launch("orchestrator", "qkdn-orchestrator", o.management)?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for p in running.iter_mut() {
        loop {
            if let Some(how) = p.exited() {
                return Err(format!(
                    "{} exited ({how}); its log ({}):\n{}",
                    p.name,
                    p.log.display(),
                    p.log_tail(15)
                ));
            }
            if plain.get(&p.readyz).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not become ready in 60 s; see {}",
                    p.name,
                    p.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    say("every service is ready; waiting for the links to produce keys");
    let client = operator(lab)?;
    wait_for_network(plan, lab, &client, running).await?;
    register_apps(plan, lab, &client).await
}

/// The operator's client of a lab.
pub(crate) fn operator(lab: &LabFile) -> Result<Client, String> {
    Client::new(&lab.ca_cert, Some((&lab.client.cert, &lab.client.key)))
}

async fn wait_for_network(
    plan: &Plan,
    lab: &LabFile,
    client: &Client,
    running: &mut [LabProcess],
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_report = Instant::now();
    loop {
        let mut waiting = Vec::new();
        for (c, endpoints) in plan.controllers.iter().zip(&lab.controllers) {
            let nodes = plan.nodes.iter().filter(|n| n.domains.contains(&c.domain)).count();
            let links = plan
                .links
                .iter()
                .filter(|l| l.ends.iter().all(|(n, _)| plan.node(n).domains.contains(&c.domain)))
                .count();
            let reachable = match client.get(&format!("{}/nodes", endpoints.rest)).await {
                Ok(v) => v["nodes"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|n| n["reachable"] == true).count()),
                Err(_) => 0,
            };
            let up = match client.get(&format!("{}/links", endpoints.rest)).await {
                Ok(v) => v["links"].as_array().map_or(0, |a| {
                    a.iter().filter(|l| l["up"] == true && l["skr_bps"].as_u64() > Some(0)).count()
                }),
                Err(_) => 0,
            };
            if reachable < nodes || up < links {
                waiting.push(format!(
                    "{}: {reachable}/{nodes} nodes reachable, {up}/{links} links producing keys",
                    c.domain
                ));
            }
        }
        if let Some(o) = &lab.orchestrator
            && waiting.is_empty()
        {
            let links = client.get(&format!("{}/network", o.rest)).await.ok();
            // Key rates too: the orchestrator routes services by them.
            let up = links.as_ref().and_then(|n| n["links"].as_array()).map_or(0, |a| {
                a.iter().filter(|l| l["up"] == true && l["skr_bps"].as_u64() > Some(0)).count()
            });
            if up < plan.links.len() {
                waiting.push(format!(
                    "orchestrator: {up}/{} links producing keys in the merged network",
                    plan.links.len()
                ));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if let Some(p) = running.iter_mut().find_map(|p| p.exited().is_some().then_some(p)) {
            return Err(format!(
                "{} exited; its log ({}):\n{}",
                p.name,
                p.log.display(),
                p.log_tail(15)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the network did not come up in 120 s ({}); logs in {}",
                waiting.join("; "),
                plan.dir.join("logs").display()
            ));
        }
        if last_report.elapsed() > Duration::from_secs(3) {
            say(&waiting.join("; "));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn register_apps(plan: &Plan, lab: &LabFile, client: &Client) -> Result<(), String> {
    for app in &plan.apps {
        let (master, from) = &app.master;
        let (slave, to) = &app.slave;
        let (from_id, to_id) = (&plan.node(from).id, &plan.node(to).id);
        let (url, body) = match &app.registrar {
            Registrar::Controller(domain) => {
                let c = lab
                    .controllers
                    .iter()
                    .find(|c| c.domain.as_deref() == Some(domain))
                    .expect("controller");
                (
                    format!("{}/applications", c.rest),
                    json!({
                    "app_id": app.id, "server": {"sae_id": master, "node": from_id},
                    "clients": [{"sae_id": slave, "node": to_id}], "qos": {"rate_bps": app.rate_bps}}),
                )
            }
            Registrar::Orchestrator => {
                let o = lab.orchestrator.as_ref().expect("orchestrator");
                (
                    format!("{}/services", o.rest),
                    json!({
                    "service_id": app.id, "server": {"sae_id": master, "node": from_id},
                    "client": {"sae_id": slave, "node": to_id}, "qos": {"rate_bps": app.rate_bps}}),
                )
            }
        };
        // A path may need a moment more of key rate on a fresh network: a few tries.
        let mut tries = 0;
        let answer = loop {
            match client.send(reqwest::Method::POST, &url, Some(&body)).await {
                Ok(a) => break a,
                Err(e) if tries < 10 => {
                    tries += 1;
                    if tries == 3 {
                        say(&format!("registering {from} -> {to}: {e}; trying again"));
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    return Err(format!("registering the demo application {from} -> {to}: {e}"));
                }
            }
        };
        // A controller's application has legs; an orchestrator's service has parts per domain.
        let mut hops: Vec<&str> = Vec::new();
        let parts = answer["legs"]
            .as_array()
            .into_iter()
            .flatten()
            .take(1)
            .chain(answer["parts"].as_array().into_iter().flatten());
        for part in parts {
            for id in part["nodes"].as_array().into_iter().flatten() {
                let name = plan
                    .nodes
                    .iter()
                    .find(|p| Some(p.id.as_str()) == id.as_str())
                    .map_or("?", |p| p.name.as_str());
                if hops.last() != Some(&name) {
                    hops.push(name);
                }
            }
        }
        let route = hops.join(" - ");
        say(&format!(
            "demo application {from} -> {to} ({master} -> {slave}) registered{}",
            if route.is_empty() { String::new() } else { format!(": {route}") }
        ));
    }
    Ok(())
}

/// The lab's description (`lab.json`).
fn describe(plan: &Plan) -> LabFile {
    let (client_cert, client_key) = plan.identity("operator");
    let controllers: Vec<ServiceEndpoints> = plan
        .controllers
        .iter()
        .map(|c| endpoints(Some(c.domain.clone()), c.ports.api, c.ports.management))
        .collect();
    LabFile {
        topology: plan.name.clone(),
        data_dir: plan.dir.clone(),
        pid: std::process::id(),
        ca_cert: plan.pki().join("ca.crt"),
        client: Identity { cert: client_cert, key: client_key },
        controller: controllers[0].clone(),
        controllers,
        orchestrator: plan.orchestrator.map(|o| endpoints(None, o.api, o.management)),
        nodes: plan
            .nodes
            .iter()
            .map(|n| NodeEntry {
                id: n.id.clone(),
                name: n.name.clone(),
                domains: n.domains.clone(),
                restconf: format!("https://localhost:{}/restconf", n.ports.api),
                kms_014: format!("https://localhost:{}", n.kms),
                kms_skip: format!("https://localhost:{}", n.skip),
                api: format!("https://localhost:{}/api", n.ports.api),
                metrics: format!("http://127.0.0.1:{}/metrics", n.ports.management),
                management: format!("http://127.0.0.1:{}", n.ports.management),
            })
            .collect(),
        saes: plan
            .saes
            .iter()
            .map(|s| {
                let (cert, key) = plan.identity(&s.id);
                SaeEntry {
                    id: s.id.clone(),
                    node: plan.node(&s.node).id.clone(),
                    node_name: s.node.clone(),
                    cert,
                    key,
                }
            })
            .collect(),
        apps: plan
            .apps
            .iter()
            .map(|a| AppEntry {
                id: a.id.clone(),
                master_sae: a.master.0.clone(),
                slave_sae: a.slave.0.clone(),
                kind: if a.registrar == Registrar::Orchestrator {
                    "service"
                } else {
                    "application"
                }
                .to_owned(),
                rate_bps: a.rate_bps,
            })
            .collect(),
    }
}

fn endpoints(domain: Option<String>, api: u16, management: u16) -> ServiceEndpoints {
    ServiceEndpoints {
        domain,
        rest: format!("https://localhost:{api}/api/v1"),
        restconf: format!("https://localhost:{api}/restconf"),
        metrics: format!("http://127.0.0.1:{management}/metrics"),
        readyz: format!("http://127.0.0.1:{management}/readyz"),
    }
}

/// How to use the lab with curl and `qkdn`.
fn hints(lab: &LabFile) -> String {
    let app = lab.apps.first();
    let tls = format!(
        "--cacert {} --cert {} --key {}",
        lab.ca_cert.display(),
        lab.client.cert.display(),
        lab.client.key.display()
    );
    let mut text = format!(
        "\nEvery service speaks HTTPS with mutual TLS (CA and certificates under {pki}).\n\
         Try (curl with the operator's certificate):\n\
         \x20 tls=\"{tls}\"\n\
         \x20 curl -s $tls {rest}/nodes | jq .\n\
         \x20 curl -s $tls {node}/data/etsi-qkd-sdn-node:qkd_node | jq .\n\
         \x20 curl -s $tls {restconf}/data/etsi-qkd-sdn-topology:qkd_network | jq .\n\
         \x20 curl -s {metrics}\n",
        pki = lab.ca_cert.parent().map(|p| p.display().to_string()).unwrap_or_default(),
        rest = lab.controller.rest,
        node = lab.nodes[0].restconf,
        restconf = lab.controller.restconf,
        metrics = lab.nodes[0].metrics,
    );
    if let Some(app) = app
        && let (Ok(master), Ok(slave)) = (lab.sae(&app.master_sae), lab.sae(&app.slave_sae))
    {
        let node = |s: &SaeEntry| lab.nodes.iter().find(|n| n.id == s.node);
        let kms = |s: &SaeEntry| node(s).map(|n| n.kms_014.clone()).unwrap_or_default();
        let skip = |s: &SaeEntry| node(s).map(|n| n.kms_skip.clone()).unwrap_or_default();
        text.push_str(&format!(
            "  # keys of the demo application {m} ({mn}) -> {s} ({sn}), relayed through trusted nodes (ETSI 014):\n\
             \x20 curl -s --cacert {ca} --cert {mc} --key {mk} '{mkms}/api/v1/keys/{s}/enc_keys?number=1' | jq .\n\
             \x20 curl -s --cacert {ca} --cert {sc} --key {sk} '{skms}/api/v1/keys/{m}/dec_keys?key_ID=<key_ID from above>' | jq .\n\
             \x20 # and over SKIP (draft-cisco-skip-02), as encryptors:\n\
             \x20 curl -s --cacert {ca} --cert {mc} --key {mk} '{mskip}/key?remoteSystemID={s}' | jq .\n\
             \x20 curl -s --cacert {ca} --cert {sc} --key {sk} '{sskip}/key/<keyId from above>?remoteSystemID={m}' | jq .\n",
            m = master.id, mn = master.node_name, s = slave.id, sn = slave.node_name,
            ca = lab.ca_cert.display(), mc = master.cert.display(), mk = master.key.display(),
            sc = slave.cert.display(), sk = slave.key.display(), mkms = kms(master), skms = kms(slave),
            mskip = skip(master), sskip = skip(slave),
        ));
        let exe =
            std::env::current_exe().map_or_else(|_| "qkdn".into(), |p| p.display().to_string());
        text.push_str(&format!(
            "Or with qkdn:\n\
             \x20 alias qkdn={exe}; export QKDN_LAB={dir}/lab.json\n\
             \x20 qkdn topology; qkdn paths; qkdn events --follow\n\
             \x20 qkdn keys get --sae {m} --peer {s}\n\
             \x20 qkdn keys get --sae {s} --peer {m} --key-id <key_ID>\n\
             \x20 # the same keys for encryptors over SKIP (a keyId is a key_ID without dashes):\n\
             \x20 qkdn keys skip --sae {m} --peer {s}\n\
             \x20 qkdn keys skip --sae {s} --peer {m} --key-id <keyId>\n",
            dir = lab.data_dir.display(),
            m = master.id,
            s = slave.id
        ));
    }
    text
}

/// Shows the status until one of the stop signals.
async fn watch(plan: &Plan, lab: &LabFile, running: &mut [LabProcess], signals: &mut StopSignals) {
    let terminal = std::io::stdout().is_terminal();
    let names = status::Names::new(plan);
    let Ok(client) = operator(lab) else { return };
    let mut seen = std::collections::BTreeSet::new();
    let mut reported_dead = std::collections::BTreeSet::new();
    if terminal {
        // Leave the hints on screen for a moment before the status takes over.
        tokio::select! {
            _ = signals.received() => return,
            _ = tokio::time::sleep(Duration::from_secs(8)) => {}
        }
    }
    loop {
        let dead: Vec<String> = running
            .iter_mut()
            .filter_map(|p| {
                let name = p.name.clone();
                let log = p.log.display().to_string();
                p.exited().map(|how| format!("{name} exited ({how}); see {log}"))
            })
            .collect();
        let snapshot = status::Snapshot::take(&client, lab).await;
        if terminal {
            let screen = status::render(&snapshot, &names, lab, &dead);
            let size =
                rustix::termios::tcgetwinsize(std::io::stdout()).ok().filter(|s| s.ws_col > 0);
            let (columns, rows) = size.map_or((100, 40), |s| (s.ws_col.into(), s.ws_row.into()));
            show(&format!("\x1b[H\x1b[2J{}", status::fit(&screen, columns, rows)));
        } else {
            for d in dead {
                if reported_dead.insert(d.clone()) {
                    say(&d);
                }
            }
            for (domain, e) in snapshot.events() {
                if seen.insert(e.to_string()) {
                    say(&status::event_line(&names, &domain, &e));
                }
            }
        }
        tokio::select! {
            _ = signals.received() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Stops every process: the orchestrator, then the agents, then the controllers.
fn stop(running: &mut Vec<LabProcess>) {
    for p in running.iter_mut().rev() {
        p.terminate();
    }
    for p in running.iter_mut().rev() {
        if !p.wait_or_kill(Duration::from_secs(10)) {
            eprintln!("qkdn lab: {} did not stop in 10 s; killed", p.name);
        }
    }
    running.clear();
}
