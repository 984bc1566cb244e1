//! `qkdn pki`: the certificates and keys a qkdn deployment needs, from a CA kept in a folder.
//!
//! ```text
//! qkdn pki init --dir DIR [--name NAME]                     # DIR/ca.crt, DIR/ca.key (alias: ca)
//! qkdn pki issue node --dir DIR --id UUID [--host H]... [--out DIR2]  # naming the node
//! qkdn pki issue service --dir DIR --name NAME [--host H]... [--out DIR2]
//! qkdn pki issue sae --dir DIR --name SAE_ID [--uri URI] [--out DIR2]  # client, CN = SAE ID
//! qkdn pki store-key --out FILE                             # KMS key store encryption key
//! ```
//!
//! `qkdn pki node|service|sae` are the same as `qkdn pki issue node|service|sae`. With
//! `--output json` each prints `{"cert": PATH, "key": PATH}` instead of the two paths.
//!
//! Private keys are written readable by their owner only. Service and node certificates carry
//! the names clients reach them by (default `localhost` and `127.0.0.1`); a node certificate
//! also names its node (`urn:qkdn:node:<uuid>`), which is how neighbours recognise it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use qkdn_yang::pki::{self, Authority, Usage};

/// Exit status when something could not be done.
const TROUBLE: u8 = 2;

/// The `pki` subcommands.
#[derive(Subcommand)]
pub(crate) enum PkiCommand {
    /// Create a certificate authority in DIR (refuses to overwrite one).
    #[command(visible_alias = "init")]
    Ca {
        /// Folder of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// Its common name.
        #[arg(long, default_value = "qkdn CA")]
        name: String,
    },
    /// Issue a certificate from the CA in DIR: for a node, a service or an SAE.
    Issue {
        #[command(subcommand)]
        what: IssueCommand,
    },
    #[command(flatten)]
    IssueDirect(IssueCommand),
    /// Write a fresh key store encryption key (64 hex digits) for `kms.store_key_file`.
    StoreKey {
        /// The file (refuses to overwrite one).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The certificates `pki issue` makes (also `pki node`, `pki service`, `pki sae`).
#[derive(Subcommand)]
pub(crate) enum IssueCommand {
    /// Issue a node's certificate (server and client use), naming the node.
    Node {
        /// Folder of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The node's qkdn_id.
        #[arg(long)]
        id: String,
        /// Host names and IP addresses it is reached by (default localhost, 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Where to write NAME.crt and NAME.key (default: the CA folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue a service's certificate (server and client use).
    Service {
        /// Folder of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// Its name (common name and file name).
        #[arg(long)]
        name: String,
        /// Host names and IP addresses it is reached by (default localhost, 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Where to write NAME.crt and NAME.key (default: the CA folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue an SAE's client certificate: its common name is the SAE ID.
    Sae {
        /// Folder of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The SAE ID.
        #[arg(long)]
        name: String,
        /// A URI SAN as well (for KMSs that read SAE IDs from URIs).
        #[arg(long)]
        uri: Option<String>,
        /// Where to write NAME.crt and NAME.key (default: the CA folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn fail(message: String) -> ExitCode {
    eprintln!("qkdn pki: {message}");
    ExitCode::from(TROUBLE)
}

fn load_ca(dir: &Path) -> Result<Authority, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (create the CA with `qkdn pki ca --dir {}`)",
                path.display(),
                dir.display()
            )
        })
    };
    Authority::from_pem(&read("ca.crt")?, &read("ca.key")?)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

fn hosts_or_default(hosts: &[String]) -> Vec<&str> {
    if hosts.is_empty() {
        vec!["localhost", "127.0.0.1"]
    } else {
        hosts.iter().map(String::as_str).collect()
    }
}

fn issue(
    dir: &Path,
    out: Option<&Path>,
    name: &str,
    hosts: &[&str],
    uri: Option<&str>,
    usage: Usage,
) -> Result<Written, String> {
    let ca = load_ca(dir)?;
    let out = out.unwrap_or(dir);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let issued = ca.issue(name, hosts, uri, usage).map_err(|e| e.to_string())?;
    let (cert, key) = issued.write(out, name).map_err(|e| e.to_string())?;
    Ok(Written { cert: Some(cert), key })
}

/// The files a subcommand wrote.
struct Written {
    cert: Option<PathBuf>,
    key: PathBuf,
}

impl Written {
    /// Their paths, one per line, or `{"cert": ..., "key": ...}` as JSON.
    fn print(&self, json: bool) {
        match (&self.cert, json) {
            (cert, true) => println!("{}", serde_json::json!({"cert": cert, "key": self.key})),
            (Some(cert), false) => println!("{}\n{}", cert.display(), self.key.display()),
            (None, false) => println!("{}", self.key.display()),
        }
    }
}

/// Runs a `pki` subcommand (`json`: print what was written as JSON).
pub(crate) fn run(command: PkiCommand, json: bool) -> ExitCode {
    let result = match command {
        PkiCommand::Ca { dir, name } => (|| {
            if dir.join("ca.key").exists() {
                return Err(format!(
                    "{}: a CA exists already; not overwriting it",
                    dir.join("ca.key").display()
                ));
            }
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let ca = Authority::generate(&name).map_err(|e| e.to_string())?;
            let (cert, key) = ca.issued().write(&dir, "ca").map_err(|e| e.to_string())?;
            Ok(Written { cert: Some(cert), key })
        })(),
        PkiCommand::Issue { what } | PkiCommand::IssueDirect(what) => issue_one(what),
        PkiCommand::StoreKey { out } => (|| {
            if out.exists() {
                return Err(format!("{}: exists already; not overwriting it", out.display()));
            }
            let key = pki::random_key_hex().map_err(|e| e.to_string())?;
            pki::write_private(&out, &format!("{key}\n")).map_err(|e| e.to_string())?;
            Ok(Written { cert: None, key: out })
        })(),
    };
    match result {
        Ok(written) => {
            written.print(json);
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

/// Issues the certificate `what` names.
fn issue_one(what: IssueCommand) -> Result<Written, String> {
    match what {
        IssueCommand::Node { dir, id, hosts, out } => {
            let id = uuid_text(&id)?;
            issue(
                &dir,
                out.as_deref(),
                &format!("node-{id}"),
                &hosts_or_default(&hosts),
                Some(&pki::node_uri(&id)),
                Usage::Service,
            )
        }
        IssueCommand::Service { dir, name, hosts, out } => {
            issue(&dir, out.as_deref(), &name, &hosts_or_default(&hosts), None, Usage::Service)
        }
        IssueCommand::Sae { dir, name, uri, out } => {
            issue(&dir, out.as_deref(), &name, &[], uri.as_deref(), Usage::Client)
        }
    }
}

/// A node ID must be a UUID (the 015 `qkdn_id`).
fn uuid_text(text: &str) -> Result<String, String> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let ok = text.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("--id {text}: expected a UUID (the node's qkdn_id)"))
    }
}
