//! Enforcing the policy ([`crate::policy`]) on every request: an axum layer ([`Gate`]) that
//! finds out who is calling, classifies the request into an interface and an operation,
//! decides with the policy table, and either refuses (in the interface's own error format,
//! logged with who, what and which rule, and counted for `/metrics`) or passes the request on
//! with an [`Authorized`] extension that handlers use to judge the conditions that need the
//! request's content (and to refuse through the same path when they do not hold).
//!
//! Who is calling ([`Caller`]) comes only from what the connection authenticated: the typed
//! identity of the client certificate (parsed once per connection by [`crate::server`]), a
//! bearer token the service knows ([`Tokens`], SHA-256 digests compared in constant time), or,
//! on a plain-HTTP loopback listener that the operator explicitly opened to everyone
//! (`insecure_allow_unauthenticated`), nobody in particular. Nothing in a request's URL or body
//! can name the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use rustls::pki_types::CertificateDer;
use serde_json::json;

use crate::identity::{Identity, IdentityError, Kind, Role};
use crate::policy::{self, Condition, Decision, Interface, Operation};
use crate::tls::PeerCertificates;

/// A TLS connection's client certificates and the typed identity of the first, parsed once when
/// the connection is accepted ([`crate::server`] inserts it into every request of the
/// connection; cloning it costs reference counts).
#[derive(Clone, Debug)]
pub struct ConnectionIdentity {
    /// The identity, or why the certificate has none.
    pub identity: Result<Arc<Identity>, Arc<IdentityError>>,
    /// The certificates, leaf first.
    pub certificates: PeerCertificates,
}

impl ConnectionIdentity {
    /// The identity of a connection whose client presented `certificates` (leaf first).
    pub fn of(certificates: PeerCertificates) -> Option<ConnectionIdentity> {
        let leaf = certificates.0.first()?;
        let identity = Identity::from_certificate(leaf).map(Arc::new).map_err(Arc::new);
        Some(ConnectionIdentity { identity, certificates })
    }

    /// The identity of a connection made with a pre-shared key that names `identity` (no
    /// certificates).
    pub fn of_key(identity: Arc<Identity>) -> ConnectionIdentity {
        ConnectionIdentity { identity: Ok(identity), certificates: PeerCertificates::default() }
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authenticated as this identity.
    Known(Arc<Identity>),
    /// Authenticated by the CA, but the credential names no qkdn identity (why).
    Unrecognised(String),
    /// No credential at all.
    Anonymous,
    /// A plain-HTTP loopback listener opened to everyone (`insecure_allow_unauthenticated`):
    /// allowed everything but keys, and what its messages claim is believed.
    InsecureLoopback,
}

impl Caller {
    /// The identity, when known.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Caller::Known(identity) => Some(identity.as_ref()),
            _ => None,
        }
    }

    /// The kind the policy judges.
    fn kind(&self) -> Option<Kind> {
        match self {
            Caller::Known(identity) => Some(identity.kind()),
            Caller::Unrecognised(_) | Caller::Anonymous | Caller::InsecureLoopback => None,
        }
    }

    fn metric_label(&self) -> &'static str {
        match self {
            Caller::Known(identity) => identity.kind().as_str(),
            Caller::Unrecognised(_) => "unrecognised",
            Caller::Anonymous => "anonymous",
            Caller::InsecureLoopback => "insecure-loopback",
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Known(identity) => write!(f, "{identity}"),
            Caller::Unrecognised(why) => write!(f, "an unrecognised caller ({why})"),
            Caller::Anonymous => f.write_str("an anonymous caller"),
            Caller::InsecureLoopback => f.write_str("an unauthenticated loopback caller"),
        }
    }
}

/// How an interface says no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorFormat {
    /// RFC 8040 `ietf-restconf:errors` (`access-denied`, `too-big`).
    Restconf,
    /// ETSI GS QKD 014: `{"message": ...}`, status 400 or 401.
    Etsi014,
    /// RFC 9457 problem details.
    Problem,
    /// gRPC status (`PERMISSION_DENIED`, `UNAUTHENTICATED`, ...).
    Grpc,
}

impl ErrorFormat {
    /// The format of `interface`.
    pub fn of(interface: Interface) -> ErrorFormat {
        match interface {
            Interface::AgentRestconf
            | Interface::ControllerRestconf
            | Interface::OrchestratorRestconf => ErrorFormat::Restconf,
            Interface::Etsi014 => ErrorFormat::Etsi014,
            // The draft defines no error body: RFC 9457 problems, as every other HTTP API.
            Interface::Skip => ErrorFormat::Problem,
            Interface::Peer => ErrorFormat::Grpc,
            Interface::AgentApi | Interface::ControllerApi | Interface::OrchestratorApi => {
                ErrorFormat::Problem
            }
        }
    }
}

/// Why a request is refused before reaching its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No usable credential.
    Unauthenticated,
    /// The caller may not do this.
    Forbidden,
    /// The request body is larger than the interface accepts.
    TooLarge,
    /// The request body did not arrive in time.
    Timeout,
}

/// A refusal on its way out, in its interface's format.
#[derive(Debug)]
pub struct Refused {
    /// The format.
    pub format: ErrorFormat,
    /// Why.
    pub refusal: Refusal,
    /// What the caller is told.
    pub message: String,
}

impl Refused {
    /// A refusal of `refusal` in `format`, saying `message`.
    pub fn new(format: ErrorFormat, refusal: Refusal, message: impl Into<String>) -> Refused {
        Refused { format, refusal, message: message.into() }
    }

    /// As a gRPC status.
    pub fn status(&self) -> tonic::Status {
        match self.refusal {
            Refusal::Unauthenticated => tonic::Status::unauthenticated(&self.message),
            Refusal::Forbidden => tonic::Status::permission_denied(&self.message),
            Refusal::TooLarge => tonic::Status::resource_exhausted(&self.message),
            Refusal::Timeout => tonic::Status::deadline_exceeded(&self.message),
        }
    }
}

impl From<Refused> for tonic::Status {
    fn from(refused: Refused) -> tonic::Status {
        refused.status()
    }
}

fn json_response(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let message = self.message;
        match self.format {
            ErrorFormat::Grpc => {
                let status = match self.refusal {
                    Refusal::Unauthenticated => tonic::Status::unauthenticated(message),
                    Refusal::Forbidden => tonic::Status::permission_denied(message),
                    Refusal::TooLarge => tonic::Status::resource_exhausted(message),
                    Refusal::Timeout => tonic::Status::deadline_exceeded(message),
                };
                status.into_http::<Body>()
            }
            ErrorFormat::Etsi014 => {
                // 014 knows 400, 401 and 503 only.
                let status = match self.refusal {
                    Refusal::Unauthenticated | Refusal::Forbidden => StatusCode::UNAUTHORIZED,
                    Refusal::TooLarge | Refusal::Timeout => StatusCode::BAD_REQUEST,
                };
                json_response(status, "application/json", json!({"message": message}).to_string())
            }
            ErrorFormat::Restconf => {
                let (status, tag) = match self.refusal {
                    Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, "access-denied"),
                    Refusal::Forbidden => (StatusCode::FORBIDDEN, "access-denied"),
                    Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too-big"),
                    Refusal::Timeout => (StatusCode::REQUEST_TIMEOUT, "malformed-message"),
                };
                let body = json!({"ietf-restconf:errors": {"error": [{
                    "error-type": "protocol", "error-tag": tag, "error-message": message}]}});
                json_response(status, "application/yang-data+json", body.to_string())
            }
            ErrorFormat::Problem => {
                let status = match self.refusal {
                    Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
                    Refusal::Forbidden => StatusCode::FORBIDDEN,
                    Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
                };
                let mut response = crate::problem::response(status, message);
                if self.refusal == Refusal::Unauthenticated {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"qkdn\""),
                    );
                }
                response
            }
        }
    }
}

/// Refusals counted per interface, operation and kind of caller, for `/metrics`.
#[derive(Debug, Default)]
pub struct Denials {
    counts: Mutex<BTreeMap<(Interface, &'static str, &'static str), u64>>,
}

impl Denials {
    fn record(&self, interface: Interface, operation: Option<Operation>, caller: &Caller) {
        let op = operation.map_or("other", Operation::as_str);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((interface, op, caller.metric_label())).or_default() += 1;
    }

    /// Every refusal so far.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Records them as `qkdn_access_denied_total{interface, operation, caller}` on the
    /// current `metrics` recorder (inside [`crate::metrics::render`]).
    pub fn emit(&self) {
        metrics::describe_counter!(
            "qkdn_access_denied_total",
            "Requests refused by the authorization policy, by interface, operation and kind of caller."
        );
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for ((interface, operation, caller), n) in counts {
            metrics::counter!("qkdn_access_denied_total", "interface" => interface.as_str(),
                "operation" => operation, "caller" => caller)
            .absolute(n);
        }
    }
}

/// A bearer token a service accepts, as its configuration names it: the operator identity it
/// stands for and the SHA-256 of the token (the token itself is never stored).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The operator's name.
    pub name: String,
    /// `admin` or `viewer`.
    pub role: TokenRole,
    /// SHA-256 of the token, hex (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
}

/// The role of a token (as configuration files spell it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// [`Role::Admin`].
    Admin,
    /// [`Role::Viewer`].
    Viewer,
}

/// The bearer tokens a service accepts.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Arc<Identity>)>,
}

impl Tokens {
    /// The tokens of a configuration; each problem names the entry (`tokens[i]`).
    pub fn from_config(configs: &[TokenConfig]) -> Result<Tokens, Vec<String>> {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let role = match c.role {
                TokenRole::Admin => Role::Admin,
                TokenRole::Viewer => Role::Viewer,
            };
            let identity = Identity::operator(&c.name, role);
            if let Err(e) = identity.validate() {
                problems.push(format!("tokens[{i}].name: {e}"));
                continue;
            }
            match hex32(&c.sha256) {
                Some(digest) => entries.push((digest, Arc::new(identity))),
                None => problems.push(format!(
                    "tokens[{i}].sha256: expected 64 hex digits (the SHA-256 of the token)"
                )),
            }
        }
        if problems.is_empty() { Ok(Tokens { entries }) } else { Err(problems) }
    }

    /// Whether there are any.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity `token` stands for.
    pub fn identity_of(&self, token: &str) -> Option<&Arc<Identity>> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        // Every entry is compared (in constant time) so the time taken says nothing.
        let mut found = None;
        for (expected, identity) in &self.entries {
            if aws_lc_rs::constant_time::verify_slices_are_equal(expected, digest.as_ref()).is_ok()
            {
                found = Some(identity);
            }
        }
        found
    }
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Finds an identity for a certificate that names no qkdn identity (ETSI 014's configured
/// ways of reading SAE IDs from other CAs' certificates).
pub type FallbackIdentity = Arc<dyn Fn(&CertificateDer<'_>) -> Option<Identity> + Send + Sync>;

/// Sorts a request into an interface and, when it is one the service knows, an operation.
pub type Classifier = fn(&Method, &str) -> (Interface, Option<Operation>);

/// The authorization layer of one listener.
pub struct Gate {
    classify: Classifier,
    controllers: BTreeSet<String>,
    tokens: Tokens,
    insecure: bool,
    fallback: Option<FallbackIdentity>,
    denials: Arc<Denials>,
}

impl Gate {
    /// A gate sorting requests with `classify`, counting refusals in `denials`.
    pub fn new(classify: Classifier, denials: Arc<Denials>) -> Gate {
        Gate {
            classify,
            controllers: BTreeSet::new(),
            tokens: Tokens::default(),
            insecure: false,
            fallback: None,
            denials,
        }
    }

    /// The controller domains [`Condition::ItsController`] accepts.
    pub fn controllers(mut self, domains: impl IntoIterator<Item = String>) -> Gate {
        self.controllers = domains.into_iter().collect();
        self
    }

    /// Bearer tokens accepted besides client certificates.
    pub fn tokens(mut self, tokens: Tokens) -> Gate {
        self.tokens = tokens;
        self
    }

    /// Callers without credentials are let in (plain-HTTP loopback listeners that the
    /// configuration opened with `insecure_allow_unauthenticated`).
    pub fn insecure(mut self, insecure: bool) -> Gate {
        self.insecure = insecure;
        self
    }

    /// How to read an identity from certificates without a qkdn one.
    pub fn fallback(mut self, fallback: FallbackIdentity) -> Gate {
        self.fallback = Some(fallback);
        self
    }

    /// `router` behind this gate: every request is judged before any handler sees it.
    pub fn protect(self, router: axum::Router) -> axum::Router {
        router.layer(GateLayer(Arc::new(self)))
    }

    /// Who is calling on `request`'s connection.
    pub fn caller(&self, request: &Request) -> Caller {
        if let Some(connection) = request.extensions().get::<ConnectionIdentity>() {
            return match &connection.identity {
                Ok(identity) => Caller::Known(identity.clone()),
                Err(e) if **e == IdentityError::Missing => {
                    let cert = connection.certificates.0.first();
                    match (&self.fallback, cert) {
                        (Some(fallback), Some(cert)) => match fallback(cert) {
                            Some(identity) => Caller::Known(Arc::new(identity)),
                            None => Caller::Unrecognised(
                                "the client certificate names no known SAE".into(),
                            ),
                        },
                        _ => Caller::Unrecognised(IdentityError::Missing.to_string()),
                    }
                }
                Err(e) => Caller::Unrecognised(e.to_string()),
            };
        }
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match bearer {
            Some(token) => match self.tokens.identity_of(token) {
                Some(identity) => Caller::Known(identity.clone()),
                None => Caller::Unrecognised("the bearer token is not valid".into()),
            },
            None if self.insecure => Caller::InsecureLoopback,
            None => Caller::Anonymous,
        }
    }

    /// Decides on a request (without running it): the [`Authorized`] it may proceed with, or
    /// its refusal (logged and counted).
    pub fn judge(&self, request: &Request) -> Result<Authorized, Refused> {
        let (interface, operation) = (self.classify)(request.method(), request.uri().path());
        let caller = self.caller(request);
        let kind = caller.kind();
        let decision = match (kind, operation) {
            // A loopback listener opened to everyone: everything but keys, whatever a message
            // claims (handlers take claims as they are, see `is_insecure_loopback`).
            (None, _) if caller == Caller::InsecureLoopback && !interface.delivers_keys() => {
                Decision::Allow
            }
            (None, _) => Decision::Deny,
            (Some(kind), Some(op)) => policy::decide(interface, op, kind),
            // A path the service does not know: whoever may do anything on the interface
            // gets its "not found"; nobody else learns even that.
            (Some(kind), None) => {
                if policy::operations(interface)
                    .into_iter()
                    .any(|op| policy::decide(interface, op, kind) != Decision::Deny)
                {
                    Decision::Allow
                } else {
                    Decision::Deny
                }
            }
        };
        let denials = self.denials.clone();
        let authorized = Authorized { caller, interface, operation, condition: None, denials };
        let what = || format!("{} {}", request.method(), request.uri().path());
        match decision {
            Decision::Allow => Ok(authorized),
            Decision::AllowIf(Condition::ItsController) => {
                let listed = matches!(authorized.caller.identity(),
                    Some(Identity::Controller(domain)) if self.controllers.contains(domain));
                if listed {
                    Ok(authorized)
                } else {
                    Err(authorized.refuse(
                        Condition::ItsController.as_str(),
                        &what(),
                        "this node does not list that controller's domain (controller.domains)",
                    ))
                }
            }
            Decision::AllowIf(condition) => {
                Ok(Authorized { condition: Some(condition), ..authorized })
            }
            Decision::Deny => {
                let rule = if kind.is_some() { "policy-table" } else { "no-identity" };
                let detail = match &authorized.caller {
                    Caller::Unrecognised(why) => why.clone(),
                    Caller::Anonymous if !self.tokens.is_empty() => {
                        "a client certificate or a bearer token is required".into()
                    }
                    Caller::Anonymous => "a client certificate is required".into(),
                    other => format!("{other} may not do this"),
                };
                Err(authorized.refuse(rule, &what(), &detail))
            }
        }
    }
}

/// What a request was allowed as; handlers read who is calling from here (never from the
/// request) and judge the condition the policy left to them.
#[derive(Clone, Debug)]
pub struct Authorized {
    /// Who is calling.
    pub caller: Caller,
    /// The interface.
    pub interface: Interface,
    /// The operation, when the service knows the request.
    pub operation: Option<Operation>,
    /// The condition the handler must judge, if any.
    pub condition: Option<Condition>,
    denials: Arc<Denials>,
}

impl Authorized {
    /// The caller's identity, when known.
    pub fn identity(&self) -> Option<&Identity> {
        self.caller.identity()
    }

    /// Whether the caller is unauthenticated on a loopback listener opened to everyone (a
    /// development setup: what messages claim is then taken as is).
    pub fn is_insecure_loopback(&self) -> bool {
        self.caller == Caller::InsecureLoopback
    }

    /// Refuses the request: logs who, what and which rule, counts it, and returns the
    /// interface's error.
    pub fn refuse(&self, rule: &str, what: &str, detail: &str) -> Refused {
        self.denials.record(self.interface, self.operation, &self.caller);
        tracing::warn!(caller = %self.caller, interface = self.interface.as_str(),
            operation = self.operation.map_or("other", Operation::as_str), rule, request = what,
            detail, "access denied");
        let refusal = match self.caller {
            Caller::Anonymous => Refusal::Unauthenticated,
            _ => Refusal::Forbidden,
        };
        let message = match self.caller {
            Caller::Anonymous | Caller::Unrecognised(_) => format!("access denied: {detail}"),
            _ => format!("access denied: {detail} ({} {})", self.caller, rule),
        };
        Refused::new(ErrorFormat::of(self.interface), refusal, message)
    }

    /// Requires `holds` (the condition the policy left to the handler); otherwise refuses as
    /// [`refuse`](Self::refuse) with the condition as the rule.
    pub fn require(&self, holds: bool, what: &str, detail: &str) -> Result<(), Refused> {
        if holds {
            return Ok(());
        }
        let rule = self.condition.map_or("handler", Condition::as_str);
        Err(self.refuse(rule, what, detail))
    }
}

/// The gate as a tower layer (what [`Gate::protect`] puts in front of a router's routes).
#[derive(Clone)]
struct GateLayer(Arc<Gate>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> GateService<S> {
        GateService { gate: self.0.clone(), inner }
    }
}

/// A route behind the gate: the request reaches it with its [`Authorized`], or is answered
/// with its refusal (no allocation or copy beyond the judgement itself).
#[derive(Clone)]
struct GateService<S> {
    gate: Arc<Gate>,
    inner: S,
}

impl<S> tower::Service<Request> for GateService<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Response, std::convert::Infallible>>,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.gate.judge(&request) {
            Ok(authorized) => {
                request.extensions_mut().insert(authorized);
                futures_util::future::Either::Right(self.inner.call(request))
            }
            Err(refused) => {
                futures_util::future::Either::Left(std::future::ready(Ok(refused.into_response())))
            }
        }
    }
}

/// The [`Authorized`] of a gRPC request (the gate put it there before tonic saw the request).
pub fn grpc_authorized<T>(request: &tonic::Request<T>) -> Result<&Authorized, tonic::Status> {
    request
        .extensions()
        .get::<Authorized>()
        .ok_or_else(|| tonic::Status::permission_denied("access denied: no authorization"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_stand_for_operators_and_are_kept_as_digests() {
        let digest = |t: &str| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let tokens = Tokens::from_config(&[
            TokenConfig { name: "ci".into(), role: TokenRole::Admin, sha256: digest("s3cret") },
            TokenConfig { name: "grafana".into(), role: TokenRole::Viewer, sha256: digest("ro") },
        ])
        .unwrap();
        assert_eq!(
            tokens.identity_of("s3cret").map(|i| i.as_ref()),
            Some(&Identity::operator("ci", Role::Admin))
        );
        assert_eq!(tokens.identity_of("ro").map(|i| i.kind()), Some(Kind::Viewer));
        assert_eq!(tokens.identity_of("guess"), None);
        let problems = Tokens::from_config(&[TokenConfig {
            name: "bad name".into(),
            role: TokenRole::Admin,
            sha256: "abc".into(),
        }])
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("tokens[0].name"), "{problems:?}");
    }
}
