//! The controller's `/metrics` (Prometheus text format, on the management port): its agents
//! (known, reachable), per physical link whether it is up, its SKR, ESKR, expected
//! consumption, the controller's reservations and QBER, and per application its state, rate,
//! path length and reroutes, with the key deliveries the agents report for it. Read at scrape
//! time from the core's published view (see [`qkdn_kit::metrics`]). The agents export their
//! key stores and relays themselves; labels are ids, never a key id.

use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::apps::AppState;
use crate::core::View;

/// The text of one scrape.
pub fn render(view: &View, denials: &qkdn_kit::Denials) -> String {
    qkdn_kit::metrics::render(|| {
        denials.emit();
        describe_gauge!("qkdn_controller_ready", "1 once the controller judged paths after start.");
        gauge!("qkdn_controller_ready").set(f64::from(u8::from(view.ready)));
        describe_gauge!("qkdn_controller_agents", "Agents the controller follows.");
        describe_gauge!("qkdn_controller_agents_reachable", "Agents that answer.");
        gauge!("qkdn_controller_agents").set(view.agents.len() as f64);
        let reachable = view.agents.iter().filter(|a| a.reachable).count();
        gauge!("qkdn_controller_agents_reachable").set(reachable as f64);
        describe_gauge!("qkdn_controller_link_problems", "Links half-configured or contradictory.");
        gauge!("qkdn_controller_link_problems").set(view.network.problems.len() as f64);
        links(view);
        applications(view);
    })
}

fn links(view: &View) {
    describe_gauge!("qkdn_link_up", "1 while the physical link is usable for key relay.");
    describe_gauge!("qkdn_link_skr_bps", "Secret key rate, bit/s.");
    describe_gauge!("qkdn_link_eskr_bps", "Expected secret key rate, bit/s.");
    describe_gauge!("qkdn_link_expected_consumption_bps", "Consumption the nodes expect, bit/s.");
    describe_gauge!("qkdn_link_reserved_bps", "Rate the controller promised to paths, bit/s.");
    describe_gauge!("qkdn_link_qber", "Quantum bit error rate.");
    describe_gauge!("qkdn_link_stock_keys", "Keys in the link's stores (the lower end).");
    for l in view.network.links.values() {
        let id = l.id.to_string();
        gauge!("qkdn_link_up", "link" => id.clone()).set(f64::from(u8::from(l.up)));
        gauge!("qkdn_link_skr_bps", "link" => id.clone()).set(l.skr_bps as f64);
        gauge!("qkdn_link_eskr_bps", "link" => id.clone()).set(l.eskr_bps as f64);
        gauge!("qkdn_link_expected_consumption_bps", "link" => id.clone())
            .set(l.expected_bps as f64);
        let reserved = view.promised.get(&l.id).copied().unwrap_or(0);
        gauge!("qkdn_link_reserved_bps", "link" => id.clone()).set(reserved as f64);
        if let Some(stock) = view.stock.get(&l.id) {
            gauge!("qkdn_link_stock_keys", "link" => id.clone()).set(*stock as f64);
        }
        if let Some(q) = l.qber {
            gauge!("qkdn_link_qber", "link" => id).set(q);
        }
    }
}

fn applications(view: &View) {
    describe_gauge!("qkdn_applications", "Applications by state.");
    describe_gauge!("qkdn_application_rate_bps", "Key rate the application asked for, bit/s.");
    describe_gauge!("qkdn_application_hops", "Links on the application's longest path.");
    describe_counter!("qkdn_application_reroutes_total", "Times the application was moved.");
    describe_counter!("qkdn_delivery_keys_total", "Keys delivered to the application's SAE.");
    describe_counter!("qkdn_delivery_bits_total", "Key bits delivered to the application's SAE.");
    describe_counter!("qkdn_delivery_failures_total", "Key requests that failed.");
    describe_counter!(
        "qkdn_delivery_fetched_keys_total",
        "Keys fetched by slave SAEs (dec_keys), per application and node."
    );
    let states = [
        (AppState::Provisioning, "provisioning"),
        (AppState::Active, "active"),
        (AppState::NoPath, "no-path"),
        (AppState::Registered, "registered"),
    ];
    for (state, name) in states {
        let n = view.apps.values().filter(|a| a.state == state).count();
        gauge!("qkdn_applications", "state" => name).set(n as f64);
    }
    let monitoring = crate::api::monitoring::document(view);
    for app in view.apps.values() {
        let id = app.spec.app_id.to_string();
        gauge!("qkdn_application_rate_bps", "app" => id.clone())
            .set(app.spec.qos.demand_bps() as f64);
        let hops = app.legs.iter().map(|l| l.links.len()).max().unwrap_or(0);
        gauge!("qkdn_application_hops", "app" => id.clone()).set(hops as f64);
        counter!("qkdn_application_reroutes_total", "app" => id.clone()).absolute(app.reroutes);
    }
    for app in monitoring["applications"].as_array().into_iter().flatten() {
        let id = app["app_id"].as_str().unwrap_or_default().to_owned();
        for d in app["deliveries"].as_array().into_iter().flatten() {
            let node = d["node"].as_str().unwrap_or_default().to_owned();
            let labels = [("app", id.clone()), ("node", node)];
            let count = |k: &str| d[k].as_u64().unwrap_or(0);
            counter!("qkdn_delivery_keys_total", &labels).absolute(count("delivered"));
            counter!("qkdn_delivery_bits_total", &labels).absolute(count("consumed_bits"));
            counter!("qkdn_delivery_failures_total", &labels).absolute(count("failed"));
            counter!("qkdn_delivery_fetched_keys_total", &labels).absolute(count("fetched_keys"));
        }
    }
}
