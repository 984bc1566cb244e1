//! `qkdn`: the operator command line.
//!
//! Today it validates YANG instance data against the modules every qkdn service embeds
//! (`qkdn yang validate`), lists those modules (`qkdn yang modules`), and makes the
//! certificates and keys of a deployment (`qkdn pki`, see [`pki`]). The lab and the network
//! commands arrive with the operator-experience issue.

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
}

#[derive(Subcommand)]
enum Command {
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
    let command = match cli.command {
        Command::Pki { command } => return pki::run(command),
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
            for m in ctx.schema().modules() {
                let kind = if m.implemented { "implemented" } else { "import-only" };
                println!("{}@{}  {kind}", m.name, m.revision.as_deref().unwrap_or("-"));
            }
            ExitCode::SUCCESS
        }
        YangCommand::Validate { file, config, tolerant } => validate(&ctx, &file, config, tolerant),
    }
}

fn validate(ctx: &YangContext, file: &PathBuf, config: bool, tolerant: bool) -> ExitCode {
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
            return ExitCode::from(INVALID);
        }
    };
    let content = if config { Content::Config } else { Content::All };
    if !tolerant {
        return match validate_data(ctx, &doc.to_string(), content) {
            Ok(()) => {
                println!("{name}: valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                report(&name.to_string(), &e);
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
            report(&name.to_string(), &e);
            ExitCode::from(INVALID)
        }
    }
}

fn report(file: &str, e: &qkdn_yang::DataError) {
    match &e.path {
        Some(path) => eprintln!("{file}: {path}: {}", e.message),
        None => eprintln!("{file}: {}", e.message),
    }
}
