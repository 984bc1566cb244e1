//! ETSI GS QKD 004 V2.1.1 key streams for applications that want a continuous, synchronised
//! supply (encryptors, MACsec/OTN gear, the OpenSSL and strongSwan QKD providers).
//!
//! [`wire`]: the binary framing the existing clients speak, in both client families. The
//! stream server over it (OPEN_CONNECT, GET_KEY, CLOSE on the KMS's delivery core, streams
//! announced to the destination node, durable positions) is not built yet.

pub mod wire;
