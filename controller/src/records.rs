//! The controller's durable records (`<data_dir>/controller.redb`): agent registrations,
//! applications with their paths, and every 015 entry the controller has written (or is about
//! to write) on a node, in the service kit's group-commit records ([`qkdn_kit::records`]).

use std::path::Path;

pub use qkdn_kit::records::StoreError;
use qkdn_kit::records::{Records, Tables};

/// The controller's tables of JSON values by string key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Agent registrations by node id.
    Agents,
    /// Applications by id.
    Applications,
    /// Entries written on nodes, by `node/kind/id`.
    Entries,
}

impl Tables for Table {
    fn name(self) -> &'static str {
        match self {
            Table::Agents => "agents",
            Table::Applications => "applications",
            Table::Entries => "entries",
        }
    }
}

/// The controller's records.
pub type Store = Records<Table>;

/// A change of them.
pub type Op = qkdn_kit::records::Op<Table>;

/// Opens (or creates) `controller.redb` in `dir`.
pub fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open_file(dir, "controller.redb")
}
