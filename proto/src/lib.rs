//! Wire formats shared by qkdn services that are not YANG-modelled: the KMS-to-KMS key relay and
//! the ETSI GS QKD 004 key-stream interface, as protobuf definitions compiled with prost.
//!
//! The crate is part of the fixed workspace layout (DESIGN.md §3); its `.proto` files and the
//! generated code arrive with the KMS (issue 4). Until then it exports nothing.
