//! `qkdn`: the operator command line.
//!
//! `qkdn lab up` runs a whole QKD network on this machine ([`lab`]); `topology`, `nodes`,
//! `links`, `paths`, `apps`, `keys` and `events` query and drive a controller and its KMSs
//! ([`commands`], pointed at a lab by its `lab.json` or at any controller by flags); `pki`
//! makes a deployment's certificates and keys ([`pki`]); `yang` validates instance data
//! against the modules every qkdn service embeds and lists them.

mod cell;
mod client;
mod commands;
mod events;
mod lab;
mod labfile;
mod pki;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qkdn_yang::YangContext;
use qkdn_yang::datastore::{ContentFilter, Datastore};
use qkdn_yang::ly::{Content, validate_data};

/// Exit status for input that is not valid.
const INVALID: u8 = 1;
/// Exit status for a usage or environment problem.
const TROUBLE: u8 = 2;

#[derive(Parser)]
#[command(name = "qkdn", version, about = "Operate a qkdn QKD network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: commands::Target,
}

#[derive(Subcommand)]
enum Command {
    /// A whole QKD network on this machine.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// The network's nodes and links.
    Topology,
    /// The nodes the controller knows.
    Nodes,
    /// The physical links (state, key rates, reservations, QBER).
    Links,
    /// The applications' key relay paths.
    Paths,
    /// Applications: list, register, delete.
    Apps {
        #[command(subcommand)]
        command: commands::AppsCommand,
    },
    /// Keys for an SAE over ETSI GS QKD 014.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCommand,
    },
    /// The controller's alarms and events: the recent ones, or (--follow) as they happen.
    Events {
        /// Keep printing new events until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// YANG data and modules.
    Yang {
        #[command(subcommand)]
        command: YangCommand,
    },
    /// Certificates and keys: a CA, node, service and SAE certificates, KMS store keys.
    Pki {
        #[command(subcommand)]
        command: pki::PkiCommand,
    },
}

#[derive(Subcommand)]
enum YangCommand {
    /// Validate a JSON instance document (RFC 7951) against qkdn's modules.
    Validate {
        /// The document.
        file: PathBuf,
        /// Configuration only: state (config false) data is an error.
        #[arg(long)]
        config: bool,
        /// Accept the input deviations qkdn's servers accept (missing module prefixes, numbers
        /// as strings, ...) and print the document as strict RFC 7951.
        #[arg(long)]
        tolerant: bool,
    },
    /// List the YANG modules compiled into qkdn.
    Modules,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.target.output == commands::Output::Json;
    use commands::NetworkCommand as Net;
    let network = |command| commands::run(command, &cli.target);
    let command = match cli.command {
        Command::Pki { command } => return pki::run(command, json),
        Command::Lab { command } => return lab::run(command, json),
        Command::Topology => return network(Net::Topology),
        Command::Nodes => return network(Net::Nodes),
        Command::Links => return network(Net::Links),
        Command::Paths => return network(Net::Paths),
        Command::Apps { command } => return network(Net::Apps(command)),
        Command::Keys { command } => return network(Net::Keys(command)),
        Command::Events { follow } => return network(Net::Events { follow }),
        Command::Yang { command } => command,
    };
    let ctx = match YangContext::qkdn() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("qkdn: {e}");
            return ExitCode::from(TROUBLE);
        }
    };
    match command {
        YangCommand::Modules => {
            let modules = ctx.schema().modules();
            if json {
                let list: Vec<serde_json::Value> = modules
                    .iter()
                    .map(|m| serde_json::json!({"name": m.name, "revision": m.revision, "implemented": m.implemented}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for m in modules {
                    let kind = if m.implemented { "implemented" } else { "import-only" };
                    println!("{}@{}  {kind}", m.name, m.revision.as_deref().unwrap_or("-"));
                }
            }
            ExitCode::SUCCESS
        }
        YangCommand::Validate { file, config, tolerant } => {
            validate(&ctx, &file, config, tolerant, json)
        }
    }
}

/// Validates `file`; with `json` the verdict is also printed as a JSON object on stdout
/// (`{"file", "valid", "path", "message"}`, or `"line"` and `"column"` for JSON syntax).
fn validate(
    ctx: &YangContext,
    file: &PathBuf,
    config: bool,
    tolerant: bool,
    json: bool,
) -> ExitCode {
    let name = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("qkdn: {name}: {e}");
            return ExitCode::from(TROUBLE);
        }
    };
    let doc: serde_json::Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{name}:{}:{}: not valid JSON: {e}", e.line(), e.column());
            if json {
                println!(
                    "{}",
                    serde_json::json!({"file": name.to_string(), "valid": false,
                        "line": e.line(), "column": e.column(), "message": e.to_string()})
                );
            }
            return ExitCode::from(INVALID);
        }
    };
    let content = if config { Content::Config } else { Content::All };
    if !tolerant {
        return match validate_data(ctx, &doc.to_string(), content) {
            Ok(()) if json => {
                println!("{}", serde_json::json!({"file": name.to_string(), "valid": true}));
                ExitCode::SUCCESS
            }
            Ok(()) => {
                println!("{name}: valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                report(&name.to_string(), &e, json);
                ExitCode::from(INVALID)
            }
        };
    }
    let builder = Datastore::builder(ctx.clone());
    let built = if config { builder.config(doc) } else { builder.data(doc) }.build();
    match built {
        Ok(ds) => {
            let filter = if config { ContentFilter::Config } else { ContentFilter::All };
            let printed = ds.snapshot().get_json(ctx, &qkdn_yang::DataPath::root(), filter);
            let data = printed.map(|p| p["ietf-restconf:data"].clone()).unwrap_or_default();
            println!("{}", serde_json::to_string_pretty(&data).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&name.to_string(), &e, json);
            ExitCode::from(INVALID)
        }
    }
}

fn report(file: &str, e: &qkdn_yang::DataError, json: bool) {
    match &e.path {
        Some(path) => eprintln!("{file}: {path}: {}", e.message),
        None => eprintln!("{file}: {}", e.message),
    }
    if json {
        let verdict = serde_json::json!({"file": file, "valid": false, "path": e.path,
            "message": e.message});
        println!("{verdict}");
    }
}
