//! A test PKI: one CA issuing the certificates of nodes, services and clients into a folder.

use std::path::{Path, PathBuf};

use qkdn_yang::pki::{Authority, Usage};

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

    /// A client certificate (`name.crt`, `name.key`) whose common name is `name`.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        self.ca.issue(name, &[], None, Usage::Client).unwrap().write(&self.dir, name).unwrap()
    }

    /// A service certificate for 127.0.0.1 and localhost.
    pub fn service(&self, name: &str) -> (PathBuf, PathBuf) {
        self.ca
            .issue(name, &["127.0.0.1", "localhost"], None, Usage::Service)
            .unwrap()
            .write(&self.dir, name)
            .unwrap()
    }

    /// The certificate of node `node` (its id as a `urn:qkdn:node:` URI), server and client.
    pub fn node(&self, name: &str, node: &str) -> (PathBuf, PathBuf) {
        let uri = qkdn_yang::pki::node_uri(node);
        let file = format!("node-{name}");
        self.ca
            .issue(&file, &["127.0.0.1", "localhost"], Some(&uri), Usage::Service)
            .unwrap()
            .write(&self.dir, &file)
            .unwrap()
    }

    /// The CA certificate file.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// An HTTPS client presenting `name`'s client certificate.
    pub fn https_client(&self, name: &str) -> reqwest::Client {
        let (cert, key) = self.client(name);
        let config = qkdn_yang::tls::client_config(&self.ca(), Some((&cert, &key))).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap()
    }
}
