//! `qkdn pki`: the certificates and keys a qkdn deployment needs, from a CA kept in a folder.
//!
//! ```text
//! qkdn pki init --dir DIR [--name NAME]                   # DIR/ca.crt, DIR/ca.key (alias: ca)
//! qkdn pki issue node --dir DIR --id UUID [--host H]...   # urn:qkdn:node:<UUID>
//! qkdn pki issue sae --dir DIR --name SAE_ID               # urn:qkdn:sae:<SAE_ID>, CN = SAE ID
//! qkdn pki issue controller --dir DIR --domain D [--host H]...   # urn:qkdn:controller:<D>
//! qkdn pki issue orchestrator --dir DIR --name N [--host H]...   # urn:qkdn:orchestrator:<N>
//! qkdn pki issue operator --dir DIR --name N --role admin|viewer # urn:qkdn:operator:<role>:<N>
//! qkdn pki store-key --out FILE                           # KMS key store encryption key
//! qkdn pki secret --out FILE                              # a simulator network secret
//! ```
//!
//! Every certificate carries exactly one typed identity (`qkdn_kit::identity`) as a URI
//! subject alternative name: that, and nothing else in it, is what qkdn services authorize by.
//! Each `issue` subcommand also takes `--out DIR2` (default: the CA folder) and `--file NAME`
//! (the files' base name; by default named after the identity). `qkdn pki node|sae|...` are the
//! same as `qkdn pki issue node|sae|...`. With `--output json` each prints `{"cert": PATH,
//! "key": PATH}` instead of the two paths.
//!
//! Private keys and secrets are created readable by their owner only (mode 0600). Node,
//! controller and orchestrator certificates are for servers and clients and carry the names
//! clients reach them by (default `localhost` and `127.0.0.1`); SAE and operator certificates
//! are client certificates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use qkdn_kit::pki::{self, Authority, Usage};
use qkdn_kit::{Identity, Role};

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
    /// Issue a certificate from the CA in DIR naming one identity: a node, an SAE, a
    /// controller, an orchestrator or an operator.
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
    /// Write a fresh secret (64 hex digits), such as the simulated devices'
    /// `simulator.network_secret_file` shared by the agents of a network.
    Secret {
        /// The file (refuses to overwrite one).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where an issued certificate goes.
#[derive(clap::Args)]
pub(crate) struct Placement {
    /// Folder of the CA.
    #[arg(long)]
    dir: PathBuf,
    /// Where to write NAME.crt and NAME.key (default: the CA folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The files' base name (default: after the identity, such as `node-<UUID>`).
    #[arg(long)]
    file: Option<String>,
}

/// The certificates `pki issue` makes (also `pki node`, `pki sae`, ...).
#[derive(Subcommand)]
pub(crate) enum IssueCommand {
    /// A node's certificate (its agent and KMS; server and client use): `urn:qkdn:node:<UUID>`.
    Node {
        #[command(flatten)]
        at: Placement,
        /// The node's qkdn_id.
        #[arg(long)]
        id: String,
        /// Host names and IP addresses it is reached by (default localhost, 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// An SAE's client certificate: urn:qkdn:sae:<SAE_ID>, common name the SAE ID.
    Sae {
        #[command(flatten)]
        at: Placement,
        /// The SAE ID.
        #[arg(long)]
        name: String,
    },
    /// A domain controller's certificate (server and client use): `urn:qkdn:controller:<DOMAIN>`.
    Controller {
        #[command(flatten)]
        at: Placement,
        /// The domain it controls.
        #[arg(long)]
        domain: String,
        /// Host names and IP addresses it is reached by (default localhost, 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// An orchestrator's certificate (server and client use): `urn:qkdn:orchestrator:<NAME>`.
    Orchestrator {
        #[command(flatten)]
        at: Placement,
        /// Its name.
        #[arg(long)]
        name: String,
        /// Host names and IP addresses it is reached by (default localhost, 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// An operator's client certificate: `urn:qkdn:operator:<ROLE>:<NAME>`.
    Operator {
        #[command(flatten)]
        at: Placement,
        /// The person's or tool's name.
        #[arg(long)]
        name: String,
        /// What it may do: admin (read and change) or viewer (read).
        #[arg(long)]
        role: RoleArg,
    },
}

/// An operator's role on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum RoleArg {
    /// Reads and changes.
    Admin,
    /// Reads.
    Viewer,
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
    at: &Placement,
    identity: &Identity,
    hosts: &[&str],
    usage: Usage,
) -> Result<Written, String> {
    let ca = load_ca(&at.dir)?;
    let out = at.out.as_deref().unwrap_or(&at.dir);
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let issued = ca.issue_identity(identity, hosts, usage).map_err(|e| e.to_string())?;
    let name = at.file.clone().unwrap_or_else(|| pki::common_name(identity));
    let (cert, key) = issued.write(out, &name).map_err(|e| e.to_string())?;
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
        PkiCommand::StoreKey { out } | PkiCommand::Secret { out } => (|| {
            if out.exists() {
                return Err(format!("{}: exists already; not overwriting it", out.display()));
            }
            pki::write_new_secret(&out).map_err(|e| e.to_string())?;
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
    let identity_error = |e: qkdn_kit::identity::IdentityError| e.to_string();
    match what {
        IssueCommand::Node { at, id, hosts } => {
            let id = uuid_text(&id)?;
            let identity = Identity::Node(id.parse().map_err(|_| format!("--id {id}"))?);
            issue(&at, &identity, &hosts_or_default(&hosts), Usage::Service)
        }
        IssueCommand::Sae { at, name } => {
            let identity = Identity::Sae(name);
            identity.validate().map_err(identity_error)?;
            issue(&at, &identity, &[], Usage::Client)
        }
        IssueCommand::Controller { at, domain, hosts } => {
            let identity = Identity::Controller(domain);
            identity.validate().map_err(identity_error)?;
            issue(&at, &identity, &hosts_or_default(&hosts), Usage::Service)
        }
        IssueCommand::Orchestrator { at, name, hosts } => {
            let identity = Identity::Orchestrator(name);
            identity.validate().map_err(identity_error)?;
            issue(&at, &identity, &hosts_or_default(&hosts), Usage::Service)
        }
        IssueCommand::Operator { at, name, role } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Viewer => Role::Viewer,
            };
            let identity = Identity::operator(&name, role);
            identity.validate().map_err(identity_error)?;
            issue(&at, &identity, &[], Usage::Client)
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
