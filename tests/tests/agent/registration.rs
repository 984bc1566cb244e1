//! Registration: an agent started before its controller keeps trying with backoff, registers
//! once the controller answers, and registers again when the controller forgets it or comes
//! back after an outage. The controller here is a small fake speaking the registration contract.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

use qkdn_kit::pki::Usage;
use qkdn_kit::tls;

use crate::harness::*;

/// What the fake controller saw and knows.
#[derive(Clone, Default)]
struct Controller {
    registrations: Arc<Mutex<Vec<Json>>>,
    known: Arc<Mutex<HashMap<String, Json>>>,
}

impl Controller {
    fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/nodes", post(register))
            .route("/api/v1/nodes/{id}", get(lookup))
            .with_state(self.clone())
    }

    fn count(&self) -> usize {
        self.registrations.lock().unwrap().len()
    }

    async fn wait_for_count(&self, n: usize) -> Json {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.count() < n {
            assert!(Instant::now() < deadline, "registration {n} did not arrive");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.registrations.lock().unwrap()[n - 1].clone()
    }
}

async fn register(
    State(c): State<Controller>,
    axum::Json(body): axum::Json<Json>,
) -> (StatusCode, axum::Json<Json>) {
    let id = body["node_id"].as_str().unwrap_or_default().to_owned();
    c.registrations.lock().unwrap().push(body.clone());
    c.known.lock().unwrap().insert(id, body);
    (StatusCode::CREATED, axum::Json(json!({})))
}

async fn lookup(State(c): State<Controller>, Path(id): Path<String>) -> (StatusCode, String) {
    match c.known.lock().unwrap().get(&id) {
        Some(body) => (StatusCode::OK, body.to_string()),
        None => (StatusCode::NOT_FOUND, json!({"message": "unknown node"}).to_string()),
    }
}

/// The fake controller serving on its own runtime, so that stopping it closes every connection
/// (as a crashed process would), not just the listener.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve(controller: &Controller, addr: SocketAddr) -> Running {
    let app = controller.router();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, is_bound) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            bound.send(()).unwrap();
            tokio::select! {
                _ = axum::serve(listener, app) => {}
                _ = stopped => {}
            }
        });
        // Dropping the runtime cancels the connection tasks and closes their sockets.
    });
    is_bound.recv().unwrap();
    Running { stop: Some(stop), thread: Some(thread) }
}

/// The registration state, read from the agent's API over mutual TLS by its controller.
async fn registration_state(https: &reqwest::Client, agent: &AgentProcess) -> Json {
    get_json(https, &format!("https://127.0.0.1:{}/api/v1/registration", agent.restconf)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_and_registers_again_after_losing_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra = format!(
        "[controller]\nurls = [\"http://127.0.0.1:{port}\"]\nheartbeat = \"150ms\"\ndomains = [\"main\"]\n"
    );
    // RESTCONF over mutual TLS: the registration carries the certificate's fingerprint.
    let pki = TestPki::new(dir.path());
    let (cert, key) = pki.issue_node("a", NODE_A);
    let restconf_tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        cert.display(),
        key.display(),
        pki.ca().display()
    );
    let agent = start(&Spec {
        dir: dir.path(),
        name: "a",
        body: format!("{}\n{extra}", node_ab(NODE_A, 101, NODE_B, 201, "", "")),
        restconf_extra: &restconf_tls,
    });

    // The controller of domain main (its certificate says so) reads and writes the node.
    let controller_identity = qkdn_kit::Identity::Controller("main".into());
    let (client_cert, client_key) =
        pki.issue_identity("controller", &controller_identity, Usage::Client);
    let config = tls::client_config(&pki.ca(), Some((&client_cert, &client_key))).unwrap();
    let https = https_client(config, Duration::from_secs(5));
    // No controller yet: the agent works and keeps trying.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let state = registration_state(&https, &agent).await;
    assert_eq!(state["state"], "registering", "{state}");
    assert!(state["attempts"].as_u64().unwrap() >= 2, "{state}");
    assert!(state["last_error"].as_str().unwrap().contains(&port.to_string()), "{state}");
    let url = format!("https://127.0.0.1:{}/restconf/data{NODE_PATH}/qkdn_id", agent.restconf);
    let served = https.get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    // Without a client certificate, or in the clear, nothing is served.
    let anonymous = tls::client_config(&pki.ca(), None).unwrap();
    let anonymous = https_client(anonymous, Duration::from_secs(5));
    assert!(anonymous.get(&url).send().await.is_err());
    assert!(http_client().get(url.replace("https://", "http://")).send().await.is_err());

    // The controller comes up: one registration with the contract's fields.
    let controller = Controller::default();
    let server = serve(&controller, addr);
    let first = controller.wait_for_count(1).await;
    assert_eq!(first["node_id"], NODE_A);
    assert_eq!(first["restconf_url"], format!("https://127.0.0.1:{}/restconf", agent.restconf));
    assert_eq!(first["certificate_sha256"], tls::certificate_sha256(&cert).unwrap());
    assert_eq!(first["agent_version"], env!("CARGO_PKG_VERSION"));
    assert!(first["kms"].is_object(), "{first}");
    assert_eq!(first["management_url"], format!("https://127.0.0.1:{}/api", agent.restconf));
    let state = registration_state(&https, &agent).await;
    assert_eq!(state["state"], "registered", "{state}");
    // Heartbeats do not register again while the controller knows the node.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(controller.count(), 1);

    // The controller forgets the node (say, its database was reset): 404, registration again.
    controller.known.lock().unwrap().clear();
    controller.wait_for_count(2).await;

    // An outage: the controller disappears and comes back on the same address.
    server.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while registration_state(&https, &agent).await["state"] != "registering" {
        assert!(Instant::now() < deadline, "the agent did not notice the outage");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarted = Controller::default();
    let _server = serve(&restarted, addr);
    let again = restarted.wait_for_count(1).await;
    assert_eq!(again["node_id"], NODE_A);
}
