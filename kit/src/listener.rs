//! Whether a listener's settings authenticate its callers (DESIGN.md §9): the check every
//! service's `check-config` and start-up run on each listener that serves an authenticated
//! interface.
//!
//! A listener must authenticate: TLS with a client CA (mutual TLS), or, for the controller's
//! API, bearer tokens. Plain HTTP is allowed on loopback only. A listener that authenticates
//! nobody is a configuration error, unless it listens on loopback and the service sets
//! `insecure_allow_unauthenticated = true` (a development escape hatch, announced loudly at
//! start; callers are then treated as operator admins).

use std::net::SocketAddr;

use crate::tls::ServerTls;

/// What is known of a listener for the check.
#[derive(Clone, Copy, Debug)]
pub struct ListenerSettings<'a> {
    /// Its configuration key (`restconf`, `api`, `peer`...).
    pub key: &'a str,
    /// Where it listens.
    pub listen: SocketAddr,
    /// Its TLS settings.
    pub tls: Option<&'a ServerTls>,
    /// Whether it authenticates callers otherwise (bearer tokens).
    pub other_authentication: bool,
}

impl<'a> ListenerSettings<'a> {
    /// The settings of listener `key` on `listen` with `tls`, authenticating by TLS only.
    pub fn new(key: &'a str, listen: SocketAddr, tls: Option<&'a ServerTls>) -> Self {
        ListenerSettings { key, listen, tls, other_authentication: false }
    }

    /// Whether callers present client certificates or tokens.
    pub fn authenticates(&self) -> bool {
        self.other_authentication || self.tls.is_some_and(|t| t.client_ca.is_some())
    }

    /// Whether its callers are let in unauthenticated: the escape hatch is on and the listener
    /// authenticates nobody.
    pub fn insecure(&self, insecure_allow_unauthenticated: bool) -> bool {
        insecure_allow_unauthenticated && !self.authenticates()
    }

    /// The problems of these settings (with `insecure_allow_unauthenticated` as configured):
    /// each the key below the listener's (`listen`, `tls`, `tls.client_ca`) and what is wrong.
    pub fn problems(&self, insecure_allow_unauthenticated: bool) -> Vec<(&'static str, String)> {
        let key = self.key;
        let loopback = self.listen.ip().is_loopback();
        let mut problems = Vec::new();
        if self.tls.is_none() && !loopback {
            problems.push((
                "listen",
                format!(
                    "{}: plain HTTP is allowed on loopback only; configure {key}.tls (with a client_ca) or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        } else if !self.authenticates() {
            if self.tls.is_some() && !loopback {
                problems.push((
                    "tls.client_ca",
                    format!(
                        "missing: callers on {} would not be authenticated; give {key}.tls the CA of the callers' certificates",
                        self.listen
                    ),
                ));
            } else if !insecure_allow_unauthenticated {
                let field = if self.tls.is_some() { "tls.client_ca" } else { "tls" };
                problems.push((
                    field,
                    format!(
                        "missing: nobody calling {} would be authenticated; configure {key}.tls with a client_ca, or set insecure_allow_unauthenticated = true for loopback development",
                        self.listen
                    ),
                ));
            }
        }
        problems
    }

    /// [`problems`](Self::problems) as `key.field: message` lines.
    pub fn problem_lines(&self, insecure_allow_unauthenticated: bool) -> Vec<String> {
        self.problems(insecure_allow_unauthenticated)
            .into_iter()
            .map(|(field, message)| format!("{}.{field}: {message}", self.key))
            .collect()
    }
}

/// Logs, loudly, that `service`'s listener `key` lets anybody in.
pub fn warn_insecure(service: &str, settings: &ListenerSettings<'_>) {
    tracing::warn!(
        listener = settings.key,
        address = %settings.listen,
        "INSECURE: {service} serves {} without authentication (insecure_allow_unauthenticated = true); every local process may act as an administrator",
        settings.key
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(client_ca: bool) -> ServerTls {
        ServerTls {
            cert: "c".into(),
            key: "k".into(),
            client_ca: client_ca.then(|| "ca".into()),
            min_version: Default::default(),
            require_post_quantum: false,
        }
    }

    #[test]
    fn only_authenticating_listeners_pass() {
        let (mutual, server_only) = (tls(true), tls(false));
        fn at<'a>(addr: &str, tls: Option<&'a ServerTls>, tokens: bool) -> ListenerSettings<'a> {
            ListenerSettings {
                key: "api",
                listen: addr.parse().unwrap(),
                tls,
                other_authentication: tokens,
            }
        }
        assert!(at("0.0.0.0:1", Some(&mutual), false).problems(false).is_empty());
        assert!(at("0.0.0.0:1", Some(&server_only), true).problems(false).is_empty());
        let p = at("0.0.0.0:1", Some(&server_only), false).problem_lines(true);
        assert!(p[0].starts_with("api.tls.client_ca: missing: callers on"), "{p:?}");
        let p = at("0.0.0.0:1", None, false).problem_lines(true);
        assert!(p[0].starts_with("api.listen: 0.0.0.0:1: plain HTTP"), "{p:?}");
        let p = at("127.0.0.1:1", None, false).problem_lines(false);
        assert!(p[0].starts_with("api.tls: missing") && p[0].contains("insecure_allow"), "{p:?}");
        let hatch = at("127.0.0.1:1", None, false);
        assert!(hatch.problems(true).is_empty());
        assert!(hatch.insecure(true));
        assert!(!at("127.0.0.1:1", Some(&mutual), false).insecure(true));
    }
}
