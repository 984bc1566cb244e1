//! Integration tests of qkdn-yang through its real interfaces: RESTCONF over real HTTP against
//! in-process servers, the datastore API, libyang and the external YANG tools (pyang, yanglint).
//! One test binary, so the libyang-heavy crate is linked once.

mod client;
mod containers;
mod datastore;
mod golden;
mod harness;
mod limits;
mod operations;
mod property;
mod reference;
mod tools;
