//! The network commands of `qkdn`: `topology`, `nodes`, `links`, `paths`, `apps`, `keys get`
//! and `events`, against a controller's REST API (and a KMS's ETSI 014 server for keys). The
//! target comes from `lab.json` (default `qkdn-lab/lab.json`, or `--lab FILE`) or from
//! `--controller URL` with `--ca`, `--cert` and `--key`. Tables by default, `--output json` for
//! scripts. Exit status: 0 done, 1 the service refused (its message is printed), 2 the command
//! could not be carried out (usage, files, connection).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value as Json, json};

use crate::cell::text;
use crate::client::{Client, Failure};
use crate::labfile::LabFile;

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned columns for people.
    Table,
    /// The services' JSON, for scripts.
    Json,
}

/// Where the commands go.
#[derive(Args)]
pub(crate) struct Target {
    /// The lab description to use.
    #[arg(long, global = true, env = "QKDN_LAB", default_value = "qkdn-lab/lab.json")]
    pub(crate) lab: PathBuf,
    /// A controller's REST root (`https://host:port/api/v1`) instead of the lab's.
    #[arg(long, global = true, env = "QKDN_CONTROLLER")]
    pub(crate) controller: Option<String>,
    /// The lab's controller of this domain (labs with several domains).
    #[arg(long, global = true)]
    pub(crate) domain: Option<String>,
    /// CA certificate to trust (with --controller, or `keys` without a lab).
    #[arg(long, global = true, env = "QKDN_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (with --controller).
    #[arg(long, global = true, env = "QKDN_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, global = true, env = "QKDN_KEY")]
    pub(crate) key: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
}

/// The `apps` subcommands.
#[derive(Subcommand)]
pub(crate) enum AppsCommand {
    /// List the controller's applications.
    List,
    /// Register an application: keys between an SAE at one node and an SAE at another.
    Register {
        /// The master SAE's ID.
        #[arg(long)]
        sae: String,
        /// Its node (qkdn_id, or a lab node's name).
        #[arg(long)]
        node: String,
        /// The slave SAE's ID.
        #[arg(long)]
        peer_sae: String,
        /// Its node.
        #[arg(long)]
        peer_node: String,
        /// Key rate, bit/s.
        #[arg(long, default_value_t = 1000)]
        rate_bps: u64,
        /// The application's id (a UUID; default: the controller picks one).
        #[arg(long)]
        id: Option<String>,
    },
    /// Remove an application (its entries on every node).
    Delete {
        /// Its id.
        id: String,
    },
}

/// Which SAE asks which KMS, and with which certificate: the lab's by default.
#[derive(Args)]
pub(crate) struct SaeIdentity {
    /// The SAE asking (its certificate is used; from the lab, or --sae-cert/--sae-key).
    #[arg(long)]
    sae: String,
    /// The SAE at the other end.
    #[arg(long)]
    peer: String,
    /// The KMS's root: its ETSI 014 server, or its SKIP key provider for `keys skip` (default:
    /// the lab's, from the SAE's node).
    #[arg(long)]
    kms: Option<String>,
    /// The SAE's certificate (default: the lab's).
    #[arg(long)]
    sae_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long)]
    sae_key: Option<PathBuf>,
}

/// The `keys` subcommands.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// Get keys over ETSI GS QKD 014: `enc_keys` as the master SAE, or `dec_keys` of the given
    /// key IDs as the slave.
    Get {
        #[command(flatten)]
        identity: SaeIdentity,
        /// How many keys (enc_keys).
        #[arg(long, default_value_t = 1)]
        number: u32,
        /// Key size in bits (enc_keys; default: the KMS's).
        #[arg(long)]
        size: Option<u32>,
        /// Key IDs to fetch as the slave SAE (dec_keys).
        #[arg(long = "key-id")]
        key_ids: Vec<String>,
    },
    /// The key status between two SAEs (ETSI 014 `status`).
    Status {
        #[command(flatten)]
        identity: SaeIdentity,
    },
    /// Get a key over SKIP (draft-cisco-skip-02) as an encryptor: a new key shared with the
    /// peer (`GET /key`), or with --key-id the key the peer took (`GET /key/{keyId}`).
    Skip {
        #[command(flatten)]
        identity: SaeIdentity,
        /// Key size in bits (a new key; default 256).
        #[arg(long)]
        size: Option<u32>,
        /// The keyId the peer encryptor was given (32 hex digits).
        #[arg(long = "key-id")]
        key_id: Option<String>,
    },
}

/// A network command.
pub(crate) enum NetworkCommand {
    /// Nodes and links.
    Topology,
    /// Nodes.
    Nodes,
    /// Links.
    Links,
    /// Application paths.
    Paths,
    /// Applications.
    Apps(AppsCommand),
    /// Keys.
    Keys(KeysCommand),
    /// Events.
    Events {
        /// Keep printing new events.
        follow: bool,
    },
}

/// Resolved target: the lab (if any), the controller's REST root, the client.
struct Resolved {
    lab: Option<LabFile>,
    /// The CA certificate to trust: `--ca`, or the lab's.
    ca: Option<PathBuf>,
    rest: String,
    client: Client,
    names: BTreeMap<String, String>,
}

fn resolve(target: &Target) -> Result<Resolved, String> {
    let lab = if target.controller.is_some() {
        LabFile::read(&target.lab).ok()
    } else {
        Some(LabFile::read(&target.lab)?)
    };
    let (rest, client) = match (&target.controller, &lab) {
        (Some(url), _) => {
            let ca = target.ca.clone().or_else(|| lab.as_ref().map(|l| l.ca_cert.clone()));
            let ca = ca.ok_or("--controller needs --ca (and --cert, --key for mutual TLS)")?;
            let identity = match (&target.cert, &target.key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                (None, None) => lab.as_ref().map(|l| (l.client.cert.clone(), l.client.key.clone())),
                _ => return Err("--cert and --key go together".into()),
            };
            let client =
                Client::new(&ca, identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))?;
            (url.trim_end_matches('/').to_owned(), client)
        }
        (None, Some(l)) => {
            let controller = match &target.domain {
                Some(d) => l
                    .controllers
                    .iter()
                    .find(|c| c.domain.as_deref() == Some(d))
                    .ok_or_else(|| format!("no domain {d} in the lab"))?,
                None => &l.controller,
            };
            (controller.rest.clone(), crate::lab::operator(l)?)
        }
        (None, None) => unreachable!("the lab is read when no controller is given"),
    };
    let mut names = BTreeMap::new();
    if let Some(l) = &lab {
        for n in &l.nodes {
            names.insert(n.id.clone(), n.name.clone());
        }
    }
    let ca = target.ca.clone().or_else(|| lab.as_ref().map(|l| l.ca_cert.clone()));
    Ok(Resolved { lab, ca, rest, client, names })
}

/// The target of `keys` without a lab or controller: only the CA to trust.
fn kms_only(target: &Target) -> Result<Resolved, String> {
    let ca = target.ca.clone().ok_or("--ca is needed without a lab")?;
    let client = Client::new(&ca, None)?;
    Ok(Resolved { lab: None, ca: Some(ca), rest: String::new(), client, names: BTreeMap::new() })
}

impl Resolved {
    fn name(&self, id: &Json) -> String {
        let id = id.as_str().unwrap_or_default();
        self.names.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// A node given as a name of the lab or an id.
    fn node_id(&self, key: &str) -> String {
        self.lab.as_ref().and_then(|l| l.node(key)).map_or_else(|| key.to_owned(), |n| n.id.clone())
    }
}

/// Runs a network command.
pub(crate) fn run(command: NetworkCommand, target: &Target) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return trouble(&e.to_string()),
    };
    // ETSI 014 needs no controller: with --ca (and the SAE's files) it works without a lab.
    let without_lab = matches!(command, NetworkCommand::Keys(_))
        && target.controller.is_none()
        && target.ca.is_some()
        && !target.lab.exists();
    let resolved = match if without_lab { kms_only(target) } else { resolve(target) } {
        Ok(r) => r,
        Err(e) => return trouble(&e),
    };
    match runtime.block_on(execute(command, &resolved, target.output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Trouble(e)) => trouble(&e),
        Err(refused) => {
            eprintln!("qkdn: {refused}");
            if target.output == Output::Json
                && let Failure::Refused { body, .. } = &refused
            {
                println!("{body}");
            }
            ExitCode::from(1)
        }
    }
}

fn trouble(message: &str) -> ExitCode {
    eprintln!("qkdn: {message}");
    ExitCode::from(2)
}

fn table(rows: Vec<Vec<String>>) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, |x| x.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> =
            r.iter().enumerate().map(|(i, x)| format!("{x:<w$}", w = widths[i])).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

async fn execute(command: NetworkCommand, r: &Resolved, output: Output) -> Result<(), Failure> {
    let json_out = output == Output::Json;
    match command {
        NetworkCommand::Topology => {
            let nodes = r.client.get(&format!("{}/nodes", r.rest)).await?;
            let links = r.client.get(&format!("{}/links", r.rest)).await?;
            if json_out {
                println!("{}", json!({"nodes": nodes["nodes"], "links": links["links"]}));
            } else {
                print!("{}", nodes_table(r, &nodes));
                println!();
                print!("{}", links_table(r, &links, &monitoring(r).await));
            }
        }
        NetworkCommand::Nodes => {
            let nodes = r.client.get(&format!("{}/nodes", r.rest)).await?;
            if json_out { println!("{nodes}") } else { print!("{}", nodes_table(r, &nodes)) }
        }
        NetworkCommand::Links => {
            let links = r.client.get(&format!("{}/links", r.rest)).await?;
            if json_out {
                println!("{links}")
            } else {
                print!("{}", links_table(r, &links, &monitoring(r).await))
            }
        }
        NetworkCommand::Paths => {
            let paths = r.client.get(&format!("{}/paths", r.rest)).await?;
            if json_out {
                println!("{paths}");
            } else {
                let mut rows =
                    vec![vec!["APPLICATION".into(), "STATE".into(), "RATE".into(), "PATH".into()]];
                for p in paths["paths"].as_array().into_iter().flatten() {
                    let hops: Vec<String> =
                        p["nodes"].as_array().into_iter().flatten().map(|n| r.name(n)).collect();
                    rows.push(vec![
                        text(&p["application"]),
                        text(&p["state"]),
                        format!("{} bit/s", text(&p["rate_bps"])),
                        hops.join(" - "),
                    ]);
                }
                print!("{}", table(rows));
            }
        }
        NetworkCommand::Apps(AppsCommand::List) => {
            let apps = r.client.get(&format!("{}/applications", r.rest)).await?;
            if json_out {
                println!("{apps}");
            } else {
                let mut rows = vec![vec![
                    "APP_ID".into(),
                    "STATE".into(),
                    "MASTER SAE@NODE".into(),
                    "SLAVE SAE@NODE".into(),
                    "RATE".into(),
                ]];
                for a in apps["applications"].as_array().into_iter().flatten() {
                    let clients: Vec<String> = a["clients"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| format!("{}@{}", text(&c["sae_id"]), r.name(&c["node"])))
                        .collect();
                    rows.push(vec![
                        text(&a["app_id"]),
                        text(&a["state"]),
                        format!(
                            "{}@{}",
                            text(&a["server"]["sae_id"]),
                            r.name(&a["server"]["node"])
                        ),
                        clients.join(", "),
                        format!("{} bit/s", text(&a["qos"]["rate_bps"])),
                    ]);
                }
                print!("{}", table(rows));
            }
        }
        NetworkCommand::Apps(AppsCommand::Register {
            sae,
            node,
            peer_sae,
            peer_node,
            rate_bps,
            id,
        }) => {
            let mut body = json!({"server": {"sae_id": sae, "node": r.node_id(&node)},
                "clients": [{"sae_id": peer_sae, "node": r.node_id(&peer_node)}], "qos": {"rate_bps": rate_bps}});
            if let Some(id) = id {
                body["app_id"] = json!(id);
            }
            let app = r
                .client
                .send(reqwest::Method::POST, &format!("{}/applications", r.rest), Some(&body))
                .await?;
            if json_out {
                println!("{app}");
            } else {
                let hops: Vec<String> = app["legs"][0]["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| r.name(n))
                    .collect();
                println!("{}  {}  {}", text(&app["app_id"]), text(&app["state"]), hops.join(" - "));
            }
        }
        NetworkCommand::Apps(AppsCommand::Delete { id }) => {
            let answer = r
                .client
                .send(reqwest::Method::DELETE, &format!("{}/applications/{id}", r.rest), None)
                .await?;
            if json_out {
                println!("{}", if answer.is_null() { json!({"deleted": id}) } else { answer })
            } else {
                println!("{id} deleted")
            }
        }
        NetworkCommand::Keys(command) => keys(command, r, json_out).await?,
        NetworkCommand::Events { follow } => {
            crate::events::EventPrinter::new(&r.client, &r.rest, &r.names, json_out)
                .run(follow)
                .await?
        }
    }
    Ok(())
}

fn nodes_table(r: &Resolved, nodes: &Json) -> String {
    let mut rows = vec![vec![
        "NODE".into(),
        "NAME".into(),
        "REACHABLE".into(),
        "LOCATION".into(),
        "INTERFACES".into(),
    ]];
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&n["node_id"]),
            r.name(&n["node_id"]),
            text(&n["reachable"]),
            text(&n["location"]),
            n["interfaces"].as_array().map_or(0, Vec::len).to_string(),
        ]);
    }
    table(rows)
}

/// The controller's monitoring document (key stores per link), or null where it has none.
async fn monitoring(r: &Resolved) -> Json {
    r.client.get(&format!("{}/monitoring", r.rest)).await.unwrap_or(Json::Null)
}

fn links_table(r: &Resolved, links: &Json, monitoring: &Json) -> String {
    let mut rows = vec![vec![
        "LINK".into(),
        "ENDS".into(),
        "UP".into(),
        "SKR bit/s".into(),
        "KEY STOCK".into(),
        "RESERVED bit/s".into(),
        "QBER".into(),
    ]];
    for l in links["links"].as_array().into_iter().flatten() {
        let ends: Vec<String> =
            l["ends"].as_array().into_iter().flatten().map(|e| r.name(&e["node"])).collect();
        rows.push(vec![
            text(&l["link_id"]),
            ends.join(" - "),
            text(&l["up"]),
            text(&l["skr_bps"]),
            crate::lab::status::link_stock(monitoring, &l["link_id"])
                .map_or("-".into(), |k| format!("{k} keys")),
            text(&l["reserved_bps"]),
            l["qber"].as_f64().map_or("-".into(), |q| format!("{q:.4}")),
        ]);
    }
    table(rows)
}

async fn keys(command: KeysCommand, r: &Resolved, json_out: bool) -> Result<(), Failure> {
    let (KeysCommand::Get { identity, .. }
    | KeysCommand::Status { identity }
    | KeysCommand::Skip { identity, .. }) = &command;
    let SaeIdentity { sae, peer, kms, sae_cert: cert, sae_key: key } = identity;
    let (kms, cert, key) = (kms.clone(), cert.clone(), key.clone());
    let lab_sae = r.lab.as_ref().map(|l| l.sae(sae));
    let from_lab = |what: &str| {
        Failure::Trouble(format!(
            "{what} of SAE {sae}: give it, or run against a lab that has {sae}"
        ))
    };
    let entry = match lab_sae {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) if cert.is_none() => return Err(Failure::Trouble(e)),
        _ => None,
    };
    let cert =
        cert.or_else(|| entry.map(|e| e.cert.clone())).ok_or_else(|| from_lab("--sae-cert"))?;
    let key = key.or_else(|| entry.map(|e| e.key.clone())).ok_or_else(|| from_lab("--sae-key"))?;
    let skip = matches!(command, KeysCommand::Skip { .. });
    let kms = match kms {
        Some(k) => k,
        None => entry
            .and_then(|e| {
                let node = r.lab.as_ref()?.node(&e.node)?;
                Some(if skip { node.kms_skip.clone() } else { node.kms_014.clone() })
            })
            .ok_or_else(|| from_lab("--kms"))?,
    };
    let ca = r.ca.clone().ok_or_else(|| from_lab("--ca"))?;
    let client = Client::new(&ca, Some((&cert, &key))).map_err(Failure::Trouble)?;
    let base = format!("{}/api/v1/keys/{peer}", kms.trim_end_matches('/'));
    let answer = match command {
        KeysCommand::Skip { size, ref key_id, .. } => {
            let root = kms.trim_end_matches('/');
            let peer = utf8_percent_encode(peer, NON_ALPHANUMERIC);
            let url = match (key_id, size) {
                (Some(id), _) => format!("{root}/key/{id}?remoteSystemID={peer}"),
                (None, Some(bits)) => format!("{root}/key?remoteSystemID={peer}&size={bits}"),
                (None, None) => format!("{root}/key?remoteSystemID={peer}"),
            };
            let answer = client.get(&url).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            } else {
                let rows = vec![
                    vec!["KEY_ID".into(), "KEY (hex)".into()],
                    vec![text(&answer["keyId"]), text(&answer["key"])],
                ];
                print!("{}", table(rows));
            }
            return Ok(());
        }
        KeysCommand::Status { .. } => client.get(&format!("{base}/status")).await?,
        KeysCommand::Get { key_ids, .. } if !key_ids.is_empty() => {
            let body = json!({"key_IDs": key_ids.iter().map(|k| json!({"key_ID": k})).collect::<Vec<_>>()});
            client.send(reqwest::Method::POST, &format!("{base}/dec_keys"), Some(&body)).await?
        }
        KeysCommand::Get { number, size, .. } => {
            let mut body = json!({"number": number});
            if let Some(s) = size {
                body["size"] = json!(s);
            }
            client.send(reqwest::Method::POST, &format!("{base}/enc_keys"), Some(&body)).await?
        }
    };
    if json_out || answer["keys"].is_null() {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
    } else {
        let mut rows = vec![vec!["KEY_ID".into(), "KEY (base64)".into()]];
        for k in answer["keys"].as_array().into_iter().flatten() {
            rows.push(vec![text(&k["key_ID"]), text(&k["key"])]);
        }
        print!("{}", table(rows));
    }
    Ok(())
}
