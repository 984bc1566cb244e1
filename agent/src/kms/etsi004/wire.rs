//! The binary framing of ETSI GS QKD 004 V2.1.1 that existing clients speak: every message is
//! an 8-byte header (version major, minor, patch; a service code; the payload's length, u32
//! big-endian) and its payload, integers big-endian, key stream IDs as 16 raw bytes (RFC 4122
//! order).
//!
//! Two client families are served, told apart by their version bytes (a reply is encoded for
//! the family of its request):
//!
//! | | [`Family::Forge`] (the ETSI forge C reference, 2.1.1) | [`Family::Qubip`] (QUBIP, 1.0.1) |
//! |---|---|---|
//! | mimetype | NUL-terminated, at most 256 bytes with the NUL | 256 bytes, NUL-padded |
//! | an error reply | the whole structure | the status alone; status 8 with the size needed |
//!
//! OPEN_CONNECT is read from both ends of its payload (the KSID is its last 16 bytes, the
//! mimetype what lies between the QoS and the KSID, trailing NULs removed), so either
//! mimetype layout parses. A GET_KEY request may carry the metadata buffer after its fields
//! (the C reference sends it); it is not read. Anything else (an unknown version or service,
//! `0xFF` "close server" included, a payload longer than [`MAX_PAYLOAD`] or not of its
//! operation's shape) is a [`FrameError`].

use uuid::Uuid;
use zeroize::Zeroizing;

/// Bytes of a header.
pub const HEADER_LEN: usize = 8;
/// The longest payload read (the reference's advice: 64 KiB).
pub const MAX_PAYLOAD: u32 = 64 << 10;
/// The longest source or destination URI, bytes.
pub const MAX_URI: usize = 1024;
/// The mimetype field's size in the fixed layout, and the most the variable one holds.
pub const MIMETYPE_LEN: usize = 256;
/// The QoS fields that are numbers, in their order on the wire.
const QOS_NUMBERS: usize = 7;

/// Service codes.
pub mod service {
    /// An error.
    pub const ERROR: u8 = 0x00;
    /// OPEN_CONNECT request.
    pub const OPEN_CONNECT: u8 = 0x02;
    /// OPEN_CONNECT reply.
    pub const OPEN_CONNECT_REPLY: u8 = 0x03;
    /// GET_KEY request.
    pub const GET_KEY: u8 = 0x04;
    /// GET_KEY reply.
    pub const GET_KEY_REPLY: u8 = 0x05;
    /// CLOSE request.
    pub const CLOSE: u8 = 0x08;
    /// CLOSE reply.
    pub const CLOSE_REPLY: u8 = 0x09;
    /// The reference code's "close server" (never honoured).
    pub const CLOSE_SERVER: u8 = 0xFF;
}

/// A client family, by the version bytes it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The ETSI forge C reference (`gs004-app-int`, version 2.1.1).
    Forge,
    /// The QUBIP Python client (version 1.0.1).
    Qubip,
}

impl Family {
    /// The family of `version`.
    pub fn of(version: [u8; 3]) -> Option<Family> {
        match version {
            [2, 1, 1] => Some(Family::Forge),
            [1, 0, 1] => Some(Family::Qubip),
            _ => None,
        }
    }

    /// Its version bytes.
    pub fn version(self) -> [u8; 3] {
        match self {
            Family::Forge => [2, 1, 1],
            Family::Qubip => [1, 0, 1],
        }
    }
}

/// The status codes of ETSI GS QKD 004 §6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// Successful.
    Ok = 0,
    /// Connected; the peer application is not connected yet.
    PeerNotConnectedYet = 1,
    /// Not enough key available.
    InsufficientKey = 2,
    /// GET_KEY: the peer application is not connected.
    PeerNotConnected = 3,
    /// No QKD connection available.
    NoQkdConnection = 4,
    /// The KSID is in use by another application.
    KsidInUse = 5,
    /// The Timeout passed.
    Timeout = 6,
    /// The QoS cannot be met: a counter-proposal is returned.
    QosNotMet = 7,
    /// The metadata buffer is too small: the size needed is returned.
    MetadataTooSmall = 8,
}

/// The QoS of a key stream. A number left 0 lets the KMS choose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qos {
    /// Bytes of each chunk.
    pub key_chunk_size: u32,
    /// Most the stream takes, bit/s.
    pub max_bps: u32,
    /// Least it needs, bit/s.
    pub min_bps: u32,
    /// Jitter it tolerates, bit/s.
    pub jitter: u32,
    /// Priority (no unit).
    pub priority: u32,
    /// How long OPEN_CONNECT and GET_KEY may wait, ms (then status 6).
    pub timeout: u32,
    /// How long the stream's reserved keys live, s.
    pub ttl: u32,
    /// The metadata's type (`application/json` is always served; empty: no metadata).
    pub metadata_mimetype: String,
}

impl Qos {
    fn numbers(&self) -> [u32; QOS_NUMBERS] {
        [
            self.key_chunk_size,
            self.max_bps,
            self.min_bps,
            self.jitter,
            self.priority,
            self.timeout,
            self.ttl,
        ]
    }

    fn from_numbers(n: [u32; QOS_NUMBERS], metadata_mimetype: String) -> Qos {
        Qos {
            key_chunk_size: n[0],
            max_bps: n[1],
            min_bps: n[2],
            jitter: n[3],
            priority: n[4],
            timeout: n[5],
            ttl: n[6],
            metadata_mimetype,
        }
    }
}

/// A message's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Whose framing.
    pub family: Family,
    /// The service code.
    pub service: u8,
    /// Payload bytes that follow.
    pub length: u32,
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// OPEN_CONNECT: a stream between the applications named `source` and `destination`; the
    /// nil KSID asks the KMS for a new one.
    OpenConnect {
        /// Source URI (the SAE ID of the application that makes the stream).
        source: String,
        /// Destination URI (the SAE ID at the other end).
        destination: String,
        /// The QoS asked for.
        qos: Qos,
        /// The KSID, or nil.
        ksid: Uuid,
    },
    /// GET_KEY: the chunk at `index` of stream `ksid`.
    GetKey {
        /// The stream.
        ksid: Uuid,
        /// The chunk's index.
        index: u32,
        /// The metadata buffer's size (0: no metadata).
        metadata_size: u32,
    },
    /// CLOSE: no new chunks for this application.
    Close {
        /// The stream.
        ksid: Uuid,
    },
}

/// A reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// To OPEN_CONNECT: the QoS granted (or counter-proposed, status 7) and the KSID.
    OpenConnect {
        /// The outcome.
        status: Status,
        /// Granted QoS, or the counter-proposal.
        qos: Qos,
        /// The stream's KSID (nil when none was made).
        ksid: Uuid,
    },
    /// To GET_KEY.
    GetKey {
        /// The outcome.
        status: Status,
        /// The chunk's index.
        index: u32,
        /// The chunk (empty unless status 0).
        key: Zeroizing<Vec<u8>>,
        /// The metadata (status 0), or the size needed, big-endian (status 8).
        metadata: Vec<u8>,
    },
    /// To CLOSE.
    Close {
        /// The outcome.
        status: Status,
    },
}

/// A frame that is not served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Neither client family's version.
    #[error("unknown protocol version {}.{}.{}", .0[0], .0[1], .0[2])]
    Version([u8; 3]),
    /// Not a request's service code.
    #[error("unknown service 0x{0:02x}")]
    Service(u8),
    /// A payload beyond [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is longer than {MAX_PAYLOAD}")]
    TooLong(u32),
    /// Not the shape of its operation.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Reads a header.
pub fn header(bytes: [u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let version = [bytes[0], bytes[1], bytes[2]];
    let family = Family::of(version).ok_or(FrameError::Version(version))?;
    let length = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let service = bytes[3];
    if !matches!(service, service::OPEN_CONNECT | service::GET_KEY | service::CLOSE) {
        return Err(FrameError::Service(service));
    }
    if length > MAX_PAYLOAD {
        return Err(FrameError::TooLong(length));
    }
    Ok(Header { family, service, length })
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn ksid_at(bytes: &[u8], at: usize) -> Option<Uuid> {
    bytes.get(at..at + 16).and_then(|b| Uuid::from_slice(b).ok())
}

/// A NUL-terminated string at the start of `bytes` and what follows its NUL.
fn c_string<'a>(bytes: &'a [u8], what: &'static str) -> Result<(String, &'a [u8]), FrameError> {
    let end = bytes.iter().position(|b| *b == 0).ok_or(FrameError::Malformed(what))?;
    if end > MAX_URI {
        return Err(FrameError::Malformed(what));
    }
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| FrameError::Malformed(what))?;
    Ok((text.to_owned(), &bytes[end + 1..]))
}

/// Reads the payload of a request whose header is `header`.
pub fn request(header: &Header, payload: &[u8]) -> Result<Request, FrameError> {
    match header.service {
        service::OPEN_CONNECT => {
            const WHAT: &str = "OPEN_CONNECT";
            let (source, rest) = c_string(payload, "OPEN_CONNECT source")?;
            let (destination, rest) = c_string(rest, "OPEN_CONNECT destination")?;
            if rest.len() < 4 * QOS_NUMBERS + 16 {
                return Err(FrameError::Malformed(WHAT));
            }
            let mut numbers = [0u32; QOS_NUMBERS];
            for (i, n) in numbers.iter_mut().enumerate() {
                *n = u32_at(rest, 4 * i).ok_or(FrameError::Malformed(WHAT))?;
            }
            let ksid = ksid_at(rest, rest.len() - 16).ok_or(FrameError::Malformed(WHAT))?;
            let mimetype = &rest[4 * QOS_NUMBERS..rest.len() - 16];
            if mimetype.len() > MIMETYPE_LEN {
                return Err(FrameError::Malformed("OPEN_CONNECT mimetype"));
            }
            let text = mimetype.split(|b| *b == 0).next().unwrap_or_default();
            if mimetype[text.len()..].iter().any(|b| *b != 0) {
                return Err(FrameError::Malformed("OPEN_CONNECT mimetype"));
            }
            let mimetype = std::str::from_utf8(text)
                .map_err(|_| FrameError::Malformed("OPEN_CONNECT mimetype"))?;
            let qos = Qos::from_numbers(numbers, mimetype.to_owned());
            Ok(Request::OpenConnect { source, destination, qos, ksid })
        }
        service::GET_KEY => {
            const WHAT: &str = "GET_KEY";
            let ksid = ksid_at(payload, 0).ok_or(FrameError::Malformed(WHAT))?;
            let index = u32_at(payload, 16).ok_or(FrameError::Malformed(WHAT))?;
            let metadata_size = u32_at(payload, 20).ok_or(FrameError::Malformed(WHAT))?;
            let trailing = payload.len() - 24;
            if trailing != 0 && trailing != metadata_size as usize {
                return Err(FrameError::Malformed(WHAT));
            }
            Ok(Request::GetKey { ksid, index, metadata_size })
        }
        service::CLOSE => {
            if payload.len() != 16 {
                return Err(FrameError::Malformed("CLOSE"));
            }
            Ok(Request::Close { ksid: ksid_at(payload, 0).ok_or(FrameError::Malformed("CLOSE"))? })
        }
        other => Err(FrameError::Service(other)),
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_mimetype(out: &mut Vec<u8>, family: Family, mimetype: &str) {
    let text = &mimetype.as_bytes()[..mimetype.len().min(MIMETYPE_LEN - 1)];
    out.extend_from_slice(text);
    let pad = match family {
        Family::Forge => 1,
        Family::Qubip => MIMETYPE_LEN - text.len(),
    };
    out.extend(std::iter::repeat_n(0, pad));
}

/// A reply as `family` reads it: header and payload in one buffer, wiped when dropped (it may
/// hold a key).
pub fn encode(family: Family, reply: &Reply) -> Zeroizing<Vec<u8>> {
    let (service, status) = match reply {
        Reply::OpenConnect { status, .. } => (service::OPEN_CONNECT_REPLY, *status),
        Reply::GetKey { status, .. } => (service::GET_KEY_REPLY, *status),
        Reply::Close { status } => (service::CLOSE_REPLY, *status),
    };
    let variable = match reply {
        Reply::GetKey { key, metadata, .. } => key.len() + metadata.len(),
        _ => MIMETYPE_LEN,
    };
    // Sized once, so that a key is never left behind by a reallocation.
    let capacity = HEADER_LEN + 4 * (2 + QOS_NUMBERS) + 16 + variable;
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    out.extend_from_slice(&family.version());
    out.push(service);
    out.extend_from_slice(&[0; 4]);
    put_u32(&mut out, status as u32);
    let short_error = family == Family::Qubip && status != Status::Ok;
    match reply {
        // QUBIP's clients read the status alone from an error reply (status 8 with the size
        // needed); its OPEN_CONNECT counter-proposal (7) and "peer not yet connected" (1) are
        // not errors there.
        Reply::OpenConnect { qos, ksid, .. }
            if !short_error
                || matches!(status, Status::QosNotMet | Status::PeerNotConnectedYet) =>
        {
            for n in qos.numbers() {
                put_u32(&mut out, n);
            }
            put_mimetype(&mut out, family, &qos.metadata_mimetype);
            out.extend_from_slice(ksid.as_bytes());
        }
        Reply::GetKey { status: Status::MetadataTooSmall, metadata, .. } if short_error => {
            out.extend_from_slice(&metadata[..metadata.len().min(4)]);
        }
        Reply::GetKey { index, key, metadata, .. } if !short_error => {
            put_u32(&mut out, *index);
            put_u32(&mut out, key.len() as u32);
            out.extend_from_slice(key);
            put_u32(&mut out, metadata.len() as u32);
            out.extend_from_slice(metadata);
        }
        _ => {}
    }
    debug_assert!(out.len() <= capacity, "the buffer never grew");
    let length = (out.len() - HEADER_LEN) as u32;
    out[4..8].copy_from_slice(&length.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(family: Family, service: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = family.version().to_vec();
        out.push(service);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn parse(bytes: &[u8]) -> Result<Request, FrameError> {
        let h = header(bytes[..8].try_into().unwrap())?;
        request(&h, &bytes[8..])
    }

    fn open_payload(mimetype: &[u8], ksid: Uuid) -> Vec<u8> {
        let mut p = b"sae-a\0sae-b\0".to_vec();
        for n in [32u32, 1000, 10, 0, 1, 5000, 60] {
            p.extend_from_slice(&n.to_be_bytes());
        }
        p.extend_from_slice(mimetype);
        p.extend_from_slice(ksid.as_bytes());
        p
    }

    #[test]
    fn open_connect_parses_in_both_mimetype_layouts() {
        let ksid = Uuid::from_u128(0x1234);
        let mut fixed = b"application/json".to_vec();
        fixed.resize(MIMETYPE_LEN, 0);
        for (family, mimetype) in
            [(Family::Forge, b"application/json\0".to_vec()), (Family::Qubip, fixed)]
        {
            let request =
                parse(&frame(family, service::OPEN_CONNECT, &open_payload(&mimetype, ksid)));
            let Ok(Request::OpenConnect { source, destination, qos, ksid: got }) = request else {
                panic!("{request:?}");
            };
            assert_eq!((source.as_str(), destination.as_str(), got), ("sae-a", "sae-b", ksid));
            assert_eq!(qos.numbers(), [32, 1000, 10, 0, 1, 5000, 60]);
            assert_eq!(qos.metadata_mimetype, "application/json");
        }
        // No metadata wanted: an empty (or all-NUL) mimetype.
        let Ok(Request::OpenConnect { qos, .. }) =
            parse(&frame(Family::Forge, service::OPEN_CONNECT, &open_payload(b"\0", Uuid::nil())))
        else {
            panic!()
        };
        assert_eq!(qos.metadata_mimetype, "");
    }

    #[test]
    fn get_key_and_close_parse_with_or_without_the_metadata_buffer() {
        let ksid = Uuid::from_u128(7);
        let mut p = ksid.as_bytes().to_vec();
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&3u32.to_be_bytes());
        let expected = Request::GetKey { ksid, index: 9, metadata_size: 3 };
        assert_eq!(parse(&frame(Family::Qubip, service::GET_KEY, &p)), Ok(expected.clone()));
        p.extend_from_slice(&[0, 0, 0]);
        assert_eq!(parse(&frame(Family::Forge, service::GET_KEY, &p)), Ok(expected));
        p.push(0);
        assert!(parse(&frame(Family::Forge, service::GET_KEY, &p)).is_err());
        assert_eq!(
            parse(&frame(Family::Forge, service::CLOSE, ksid.as_bytes())),
            Ok(Request::Close { ksid })
        );
    }

    #[test]
    fn frames_that_are_not_served_are_errors() {
        let ksid = Uuid::from_u128(7);
        let mut bad_version = frame(Family::Forge, service::CLOSE, ksid.as_bytes());
        bad_version[0] = 3;
        assert_eq!(parse(&bad_version), Err(FrameError::Version([3, 1, 1])));
        for code in [service::CLOSE_SERVER, service::ERROR, service::GET_KEY_REPLY, 0x42] {
            let f = frame(Family::Forge, code, ksid.as_bytes());
            assert_eq!(parse(&f), Err(FrameError::Service(code)));
        }
        let mut huge = frame(Family::Forge, service::CLOSE, &[]);
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(header(huge[..8].try_into().unwrap()), Err(FrameError::TooLong(u32::MAX)));
        for payload in [&[][..], &[1, 2, 3], &[0; 17]] {
            assert!(parse(&frame(Family::Qubip, service::CLOSE, payload)).is_err());
            assert!(parse(&frame(Family::Qubip, service::GET_KEY, payload)).is_err());
            assert!(parse(&frame(Family::Qubip, service::OPEN_CONNECT, payload)).is_err());
        }
        // No NUL after the source, a mimetype with bytes after its NUL, one too long.
        assert!(parse(&frame(Family::Forge, service::OPEN_CONNECT, b"sae-a")).is_err());
        let mut trailing = b"json\0x".to_vec();
        trailing.resize(8, 0);
        assert!(
            parse(&frame(Family::Forge, service::OPEN_CONNECT, &open_payload(&trailing, ksid)))
                .is_err()
        );
        let long = vec![b'a'; MIMETYPE_LEN + 1];
        assert!(
            parse(&frame(Family::Forge, service::OPEN_CONNECT, &open_payload(&long, ksid)))
                .is_err()
        );
    }

    proptest::proptest! {
        /// Whatever arrives, reading it ends in a request or an error, never a panic.
        #[test]
        fn any_bytes_are_read_without_panicking(
            version in proptest::sample::select(vec![[2u8, 1, 1], [1, 0, 1], [0, 0, 0]]),
            code in proptest::sample::select(vec![0x02u8, 0x04, 0x08, 0xff, 0x00]),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        ) {
            let mut bytes = version.to_vec();
            bytes.push(code);
            bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&payload);
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn replies_follow_the_family_of_the_request() {
        let ksid = Uuid::from_u128(5);
        let qos = Qos {
            key_chunk_size: 32,
            metadata_mimetype: "application/json".into(),
            ..Qos::default()
        };
        let open = Reply::OpenConnect { status: Status::Ok, qos: qos.clone(), ksid };
        let forge = encode(Family::Forge, &open);
        assert_eq!(&forge[..4], &[2, 1, 1, service::OPEN_CONNECT_REPLY]);
        assert_eq!(forge.len(), 8 + 4 + 28 + "application/json".len() + 1 + 16);
        let qubip = encode(Family::Qubip, &open);
        assert_eq!(qubip.len(), 8 + 4 + 28 + MIMETYPE_LEN + 16);
        assert_eq!(&qubip[qubip.len() - 16..], ksid.as_bytes());
        assert_eq!(u32::from_be_bytes(qubip[4..8].try_into().unwrap()) as usize, qubip.len() - 8);

        let key = Reply::GetKey {
            status: Status::Ok,
            index: 3,
            key: Zeroizing::new(vec![0xab; 32]),
            metadata: b"{}".to_vec(),
        };
        for family in [Family::Forge, Family::Qubip] {
            let bytes = encode(family, &key);
            assert_eq!(bytes.len(), 8 + 4 + 4 + 4 + 32 + 4 + 2);
            assert_eq!(&bytes[20..52], &[0xab; 32]);
        }
        let short = Reply::GetKey {
            status: Status::MetadataTooSmall,
            index: 3,
            key: Zeroizing::new(Vec::new()),
            metadata: 40u32.to_be_bytes().to_vec(),
        };
        assert_eq!(&encode(Family::Qubip, &short)[8..], &[0, 0, 0, 8, 0, 0, 0, 40]);
        assert_eq!(encode(Family::Forge, &short).len(), 8 + 4 + 4 + 4 + 4 + 4);
        let refused = Reply::GetKey {
            status: Status::InsufficientKey,
            index: 3,
            key: Zeroizing::new(Vec::new()),
            metadata: Vec::new(),
        };
        assert_eq!(&encode(Family::Qubip, &refused)[8..], &[0, 0, 0, 2]);
        assert_eq!(
            &encode(Family::Forge, &Reply::Close { status: Status::Ok })[..],
            &[2, 1, 1, 9, 0, 0, 0, 4, 0, 0, 0, 0]
        );
    }
}
