//! `qkdn-agent`: the node agent (ETSI GS QKD 015 over RESTCONF, device drivers, embedded KMS).

fn main() {}
