//! A test PKI: one CA issuing, into a folder, certificates that each name one typed identity
//! (nodes, controllers, orchestrators, operators, SAEs), and HTTPS clients presenting them.

use std::path::{Path, PathBuf};

use qkdn_kit::pki::{Authority, Usage};
use qkdn_kit::{Identity, Role};

/// The CA and where its files go.
pub struct TestPki {
    /// The folder.
    pub dir: PathBuf,
    ca: Authority,
}

impl TestPki {
    /// A new CA, its certificate in `dir/ca.crt`.
    pub fn new(dir: &Path) -> TestPki {
        let ca = Authority::generate("qkdn test CA").unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
        TestPki { dir: dir.to_path_buf(), ca }
    }

    /// A certificate of `identity` (`file.crt`, `file.key`); services' certificates name
    /// 127.0.0.1 and localhost.
    pub fn issue(&self, file: &str, identity: &Identity, usage: Usage) -> (PathBuf, PathBuf) {
        let hosts: &[&str] =
            if usage == Usage::Service { &["127.0.0.1", "localhost"] } else { &[] };
        self.ca.issue_identity(identity, hosts, usage).unwrap().write(&self.dir, file).unwrap()
    }

    /// The certificate of node `node` (`node-<name>`), server and client.
    pub fn node(&self, name: &str, node: &str) -> (PathBuf, PathBuf) {
        let identity = Identity::Node(node.parse().unwrap());
        self.issue(&format!("node-{name}"), &identity, Usage::Service)
    }

    /// The certificate of the controller of domain `domain`, server and client.
    pub fn controller(&self, domain: &str) -> (PathBuf, PathBuf) {
        self.issue(
            &format!("controller-{domain}"),
            &Identity::Controller(domain.into()),
            Usage::Service,
        )
    }

    /// The certificate of orchestrator `name`, server and client.
    pub fn orchestrator(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue(
            &format!("orchestrator-{name}"),
            &Identity::Orchestrator(name.into()),
            Usage::Service,
        )
    }

    /// The client certificate of operator `name`.
    pub fn operator(&self, name: &str, role: Role) -> (PathBuf, PathBuf) {
        self.issue(&format!("operator-{name}"), &Identity::operator(name, role), Usage::Client)
    }

    /// The client certificate of SAE `id` (its common name is the SAE ID too).
    pub fn sae(&self, id: &str) -> (PathBuf, PathBuf) {
        self.issue(id, &Identity::Sae(id.into()), Usage::Client)
    }

    /// A client certificate of this CA that names no qkdn identity (a third party's).
    pub fn untyped(&self, name: &str) -> (PathBuf, PathBuf) {
        self.ca.issue(name, &[], None, Usage::Client).unwrap().write(&self.dir, name).unwrap()
    }

    /// The CA certificate file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// An HTTPS client presenting the certificate `files` (from [`issue`](Self::issue) and
    /// the like).
    pub fn https_client(&self, files: (PathBuf, PathBuf)) -> reqwest::Client {
        https_client(&self.ca(), Some((&files.0, &files.1)))
    }

    /// An HTTPS client of the admin operator `name`.
    pub fn admin_client(&self, name: &str) -> reqwest::Client {
        self.https_client(self.operator(name, Role::Admin))
    }
}

/// An HTTPS client trusting the CA certificate `ca` and presenting `identity` (certificate and
/// key files; none: no client certificate); its requests give up after 20 s.
pub fn https_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let config = qkdn_kit::tls::client_config(ca, identity).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}
