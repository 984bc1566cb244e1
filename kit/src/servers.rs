//! A service's servers: each listener served with its router and options ([`crate::serve`]) in
//! a task of its own, all stopped together (requests in flight finish within each edge's grace
//! period), and a signal other tasks can follow to stop with them.

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{ServeOptions, serve};

/// The servers of a service.
pub struct Servers {
    stop: watch::Sender<bool>,
    running: Vec<JoinHandle<()>>,
}

impl Default for Servers {
    fn default() -> Self {
        Servers::new()
    }
}

impl Servers {
    /// No servers yet.
    pub fn new() -> Servers {
        Servers { stop: watch::channel(false).0, running: Vec::new() }
    }

    /// Serves `router` on `listener` until [`Servers::stop`]; `name` says which in the log
    /// when it fails.
    pub fn spawn(
        &mut self,
        name: &'static str,
        listener: TcpListener,
        router: Router,
        options: ServeOptions,
    ) {
        let mut stopping = self.stop.subscribe();
        self.running.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = serve(listener, router, options, shutdown).await {
                tracing::error!(server = name, error = %e, "server stopped");
            }
        }));
    }

    /// Turns true when the servers stop (for tasks that stop with them).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops every server and waits for them.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        for server in self.running {
            let _ = server.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn servers_serve_until_stopped_and_then_refuse() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut servers = Servers::new();
        let mut stopping = servers.stopping();
        servers.spawn(
            "test",
            listener,
            Router::new().route("/", get(|| async { "up" })),
            ServeOptions::default(),
        );
        let url = format!("http://{addr}/");
        assert_eq!(reqwest::get(&url).await.unwrap().text().await.unwrap(), "up");
        tokio::time::timeout(Duration::from_secs(10), servers.stop()).await.unwrap();
        assert!(*stopping.borrow_and_update());
        assert!(reqwest::get(&url).await.is_err(), "the listener is closed");
    }
}
