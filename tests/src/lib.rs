//! Integration tests of qkdn over real processes and in-process networks.
//!
//! The foundation's own integration tests live beside the crate they test
//! (`yang/tests/it/`); the multi-service tests (agents, controller, orchestrator, KMS) land here
//! as those services arrive.
