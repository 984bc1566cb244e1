//! Prometheus exposition for every qkdn service's `/metrics`.
//!
//! Services keep their figures where they already live (key stores, relays, sessions, the
//! controller's view); on each scrape they describe and set them on a fresh recorder with the
//! `metrics` macros inside [`render`], which returns the Prometheus text format. Nothing is
//! global, so several services in one process (tests) never mix their figures, and a scrape
//! always shows the current state rather than what was last pushed. Counters are set with
//! `absolute`, gauges with `set`. Labels name links, nodes, applications and SAEs, never a key.

use metrics_exporter_prometheus::PrometheusBuilder;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs `emit` against a fresh recorder and returns what it recorded in the Prometheus text
/// format.
pub fn render(emit: impl FnOnce()) -> String {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, emit);
    handle.render()
}

/// An axum response carrying `text` in the Prometheus text format.
pub fn response(text: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_and_counters_with_labels_and_help() {
        let text = render(|| {
            metrics::describe_gauge!("qkdn_test_fill_ratio", "How full a store is.");
            metrics::gauge!("qkdn_test_fill_ratio", "link" => "l1").set(0.5);
            metrics::counter!("qkdn_test_keys_total", "link" => "l1").absolute(42);
        });
        assert!(text.contains("# HELP qkdn_test_fill_ratio How full a store is."), "{text}");
        assert!(text.contains("# TYPE qkdn_test_fill_ratio gauge"), "{text}");
        assert!(text.contains("qkdn_test_fill_ratio{link=\"l1\"} 0.5"), "{text}");
        assert!(text.contains("qkdn_test_keys_total{link=\"l1\"} 42"), "{text}");
        // Each scrape starts empty.
        assert_eq!(render(|| {}), "");
    }
}
