//! YANG and RESTCONF for qkdn: the ETSI GS QKD 015 modules (and the IETF modules RESTCONF
//! needs) embedded in the binary, a libyang context built from them, a validated datastore, and
//! an RFC 8040 RESTCONF server and client.
//!
//! Data flows through the crate like this: a RESTCONF request body is read by the server
//! ([`restconf`]), made tolerant of common client deviations ([`input`]), type-checked and
//! canonicalised by libyang, and handed to the [`datastore`] owner thread as an edit. The owner
//! applies it to a copy of the current tree (an immutable, structurally shared [`tree`]),
//! revalidates with libyang only the parts the edit touched (the validation units of
//! `schema::units`), asks the application's hook whether it accepts the change set, and
//! publishes the new tree as a snapshot. Readers render snapshots to RFC 7951 JSON without
//! locking and without libyang.

pub mod context;
pub mod datastore;
pub mod error;
pub mod etsi015;
pub mod input;
pub mod ly;
pub mod modules;
pub mod path;
pub mod restconf;
pub mod schema;
pub mod tree;
pub mod value;

mod libyang_ffi;

pub use context::{ContextError, YangContext};
pub use datastore::Datastore;
pub use error::{DataError, ErrorTag};
pub use path::DataPath;
pub use schema::{Schema, SchemaId};
