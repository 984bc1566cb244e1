//! The management endpoints every service serves on its plain-HTTP management listener, for
//! supervisors and Prometheus: `/healthz` (the process answers), `/readyz` (it is ready to
//! serve, else 503 with the reason) and `/metrics` (the Prometheus text format), and nothing
//! else (a 404 that names them). They change nothing: any method but GET is refused (405).
//! They authenticate nobody (the port is for supervisors and Prometheus, kept off the network
//! by its listen address; see SECURITY.md), so they say nothing about keys.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What a service's management endpoints read of it.
pub trait Observed: Clone + Send + Sync + 'static {
    /// `None` when it is ready to serve, else why it is not.
    fn not_ready(&self) -> Option<String>;
    /// Its figures in the Prometheus text format ([`crate::metrics::render`]).
    fn metrics(&self) -> String;
}

/// The router of the management endpoints of `observed`.
pub fn router(observed: impl Observed) -> Router {
    let (ready, metrics) = (observed.clone(), observed);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move { readiness(ready.not_ready()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { crate::metrics::response(metrics.metrics()) }
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such management resource (here: /healthz, /readyz, /metrics; the rest is on the authenticated API)\n",
            )
        })
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, "the management endpoints are read-only (GET)\n")
        })
}

fn readiness(not_ready: Option<String>) -> Response {
    match not_ready {
        None => "ready\n".into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Fake(Arc<AtomicBool>);

    impl Observed for Fake {
        fn not_ready(&self) -> Option<String> {
            (!self.0.load(Ordering::SeqCst)).then(|| "loading state".to_owned())
        }
        fn metrics(&self) -> String {
            "qkdn_fake 1\n".to_owned()
        }
    }

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        call(router, axum::http::Method::GET, path).await
    }

    async fn call(router: &Router, method: axum::http::Method, path: &str) -> (StatusCode, String) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_the_service_and_other_paths_are_named() {
        let fake = Fake::default();
        let router = router(fake.clone());
        assert_eq!(get(&router, "/healthz").await, (StatusCode::OK, "ok\n".into()));
        assert_eq!(
            get(&router, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "loading state\n".into())
        );
        fake.0.store(true, Ordering::SeqCst);
        assert_eq!(get(&router, "/readyz").await, (StatusCode::OK, "ready\n".into()));
        assert_eq!(get(&router, "/metrics").await.1, "qkdn_fake 1\n");
        let (status, body) = get(&router, "/keys").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("/healthz, /readyz, /metrics"), "{body}");
        // Read-only: other methods are refused with a body, and nothing changes.
        for path in ["/healthz", "/readyz", "/metrics"] {
            for method in [axum::http::Method::POST, axum::http::Method::DELETE] {
                let (status, body) = call(&router, method, path).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
                assert!(body.contains("read-only"), "{body}");
            }
        }
        assert_eq!(get(&router, "/readyz").await, (StatusCode::OK, "ready\n".into()));
    }
}
