//! The orchestrator's durable records (`<data_dir>/orchestrator.redb`): its end-to-end services,
//! in the service kit's group-commit records ([`qkdn_kit::records`]).

use std::path::Path;

pub use qkdn_kit::records::StoreError;
use qkdn_kit::records::{Records, Tables};

/// The orchestrator's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// End-to-end services by id.
    Services,
}

impl Tables for Table {
    fn name(self) -> &'static str {
        match self {
            Table::Services => "services",
        }
    }
}

/// The orchestrator's records.
pub type Store = Records<Table>;

/// A change of them.
pub type Op = qkdn_kit::records::Op<Table>;

/// Opens (or creates) `orchestrator.redb` in `dir`.
pub fn open(dir: &Path) -> Result<Store, StoreError> {
    Store::open_file(dir, "orchestrator.redb")
}
