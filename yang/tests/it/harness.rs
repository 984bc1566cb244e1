//! Test harness: in-process RESTCONF servers on loopback, and helpers to look at a datastore.

use std::path::{Path, PathBuf};

use qkdn_kit::ErrorFormat;
use qkdn_kit::server::{ServeOptions, serve};
use qkdn_yang::datastore::{ContentFilter, Datastore};
use qkdn_yang::restconf::{RestconfOptions, RestconfServer, RestconfServerBuilder};
use qkdn_yang::{DataPath, YangContext};
use serde_json::Value as Json;
use tokio::sync::oneshot;

/// The repository root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("yang/ has a parent").to_path_buf()
}

/// `../shared/reference` beside the repository.
pub(crate) fn reference_dir() -> PathBuf {
    repo_root().join("../shared/reference")
}

/// Reads a JSON file relative to the repository root.
pub(crate) fn read_json(relative: &str) -> Json {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example node served by `restconf-serve`.
pub(crate) fn example_node() -> Json {
    read_json("deploy/examples/qkd-node.json")
}

/// A running server.
pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) ds: Datastore,
    pub(crate) server: RestconfServer,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestServer {
    /// A server over the qkdn modules with `data` (configuration and state) and default options.
    pub(crate) async fn start(data: Json) -> TestServer {
        Self::start_with(data, RestconfOptions::default(), |b| b.stream("NETCONF", "test stream"))
            .await
    }

    /// A server with custom options and builder settings.
    pub(crate) async fn start_with(
        data: Json,
        options: RestconfOptions,
        configure: impl FnOnce(RestconfServerBuilder) -> RestconfServerBuilder,
    ) -> TestServer {
        let ctx = YangContext::qkdn().expect("qkdn context");
        let ds = Datastore::builder(ctx).data(data).build().expect("datastore");
        Self::serve_datastore(ds, options, configure).await
    }

    /// A server over a datastore of `ctx`, with connection settings.
    pub(crate) async fn start_on(
        ctx: YangContext,
        options: RestconfOptions,
        serve_options: ServeOptions,
        configure: impl FnOnce(RestconfServerBuilder) -> RestconfServerBuilder,
    ) -> TestServer {
        let ds = Datastore::builder(ctx).build().expect("datastore");
        Self::serve_full(ds, options, serve_options, configure, None).await
    }

    /// A server over an existing datastore.
    pub(crate) async fn serve_datastore(
        ds: Datastore,
        options: RestconfOptions,
        configure: impl FnOnce(RestconfServerBuilder) -> RestconfServerBuilder,
    ) -> TestServer {
        Self::serve_full(ds, options, ServeOptions::default(), configure, None).await
    }

    /// The general form: `addr` picks the listening address (default: any free loopback port).
    pub(crate) async fn serve_full(
        ds: Datastore,
        options: RestconfOptions,
        serve_options: ServeOptions,
        configure: impl FnOnce(RestconfServerBuilder) -> RestconfServerBuilder,
        addr: Option<std::net::SocketAddr>,
    ) -> TestServer {
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
                .await
                .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let options = RestconfOptions { base_url: base.clone(), ..options };
        let server = configure(RestconfServer::builder(ds.clone()).options(options))
            .build()
            .await
            .expect("server");
        let (stop, stopped) = oneshot::channel::<()>();
        let router = server.router();
        let serve_options = ServeOptions { format_of: |_| ErrorFormat::Restconf, ..serve_options };
        tokio::spawn(async move {
            let _ = serve(listener, router, serve_options, async {
                let _ = stopped.await;
            })
            .await;
        });
        TestServer { base, ds, server, stop: Some(stop) }
    }

    /// A plain HTTP client (no redirects, no pooling surprises).
    pub(crate) fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// GETs `path` on this server (expecting success) and decodes the JSON body.
    pub(crate) async fn get_json(&self, path: &str) -> Json {
        let response = self.http().get(self.url(path)).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("JSON body")
    }

    /// URL of `path` on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Everything a datastore holds, for before/after comparisons: versions and full content.
#[derive(Debug, PartialEq)]
pub(crate) struct Fingerprint {
    pub(crate) running_version: u64,
    pub(crate) state_version: u64,
    pub(crate) content: Json,
}

pub(crate) fn fingerprint(ds: &Datastore) -> Fingerprint {
    let snap = ds.snapshot();
    Fingerprint {
        running_version: snap.running_version(),
        state_version: snap.state_version(),
        content: snap
            .get_json(ds.context(), &DataPath::root(), ContentFilter::All)
            .expect("root renders"),
    }
}
