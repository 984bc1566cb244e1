//! The agent's `/metrics` (Prometheus text format, on the management port): per physical link
//! its device state, secret key rate and QBER; per key store its fill level, fill and
//! consumption rates and alarms, and how many keys were filled, consumed and dropped; per
//! virtual link this node sources the relays, keys, failures and end-to-end latency; per
//! application the ETSI 014 requests, keys and bits delivered, failures and latency. Every
//! figure is read at scrape time from the task or structure that owns it (see
//! [`qkdn_kit::metrics`]); labels are link and application ids, never a key id.

use metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::register::RegistrationState;
use crate::views::{KmsView, ManagementState};

/// The text of one scrape.
pub fn render(state: &ManagementState) -> String {
    qkdn_kit::metrics::render(|| {
        state.denials.emit();
        describe_gauge!("qkdn_agent_ready", "1 once the agent has started.");
        gauge!("qkdn_agent_ready").set(f64::from(u8::from(*state.ready.borrow())));
        describe_gauge!(
            "qkdn_agent_registered",
            "1 while the agent is registered with a controller."
        );
        let registered =
            matches!(*state.registration.borrow(), RegistrationState::Registered { .. });
        gauge!("qkdn_agent_registered").set(f64::from(u8::from(registered)));
        links(state);
        if let Some(kms) = &state.kms {
            stores(kms);
            relays(kms);
            deliveries(kms);
            key_interfaces(kms);
        }
    })
}

fn links(state: &ManagementState) {
    describe_gauge!("qkdn_link_up", "1 while the link's device produces keys.");
    describe_gauge!("qkdn_link_skr_bps", "Secret key rate of the link's device, bit/s.");
    describe_gauge!("qkdn_link_qber", "Quantum bit error rate the link's device reports.");
    let view = state.view.borrow().clone();
    for link in &view.links {
        let id = link.link.to_string();
        gauge!("qkdn_link_up", "link" => id.clone()).set(f64::from(u8::from(link.up)));
        if let Some(skr) = link.skr_bps {
            gauge!("qkdn_link_skr_bps", "link" => id.clone()).set(skr as f64);
        }
        if let Some(qber) = link.qber {
            gauge!("qkdn_link_qber", "link" => id).set(qber);
        }
    }
    describe_gauge!("qkdn_failed_interfaces", "QKD interfaces whose device has failed.");
    gauge!("qkdn_failed_interfaces").set(view.failed_interfaces.len() as f64);
}

fn stores(kms: &KmsView) {
    describe_gauge!("qkdn_key_store_keys", "Keys held in the link's store.");
    describe_gauge!("qkdn_key_store_free_keys", "Keys this end may still hand out.");
    describe_gauge!("qkdn_key_store_fill_ratio", "How full the store is, 0 to 1.");
    describe_gauge!("qkdn_key_store_fill_bps", "Key bits stored per second (smoothed).");
    describe_gauge!("qkdn_key_store_consumption_bps", "Key bits consumed per second (smoothed).");
    describe_gauge!("qkdn_key_store_alarm", "1 while the store is past the named threshold.");
    describe_counter!("qkdn_key_store_filled_keys_total", "Keys stored since start.");
    describe_counter!("qkdn_key_store_consumed_keys_total", "Keys handed out since start.");
    describe_counter!("qkdn_key_store_dropped_keys_total", "Keys dropped (expired or full).");
    let health = kms.health.borrow().clone();
    for s in kms.figures.borrow().iter() {
        let id = s.link.to_string();
        gauge!("qkdn_key_store_keys", "link" => id.clone()).set(s.stored as f64);
        gauge!("qkdn_key_store_free_keys", "link" => id.clone()).set(s.free_owned as f64);
        counter!("qkdn_key_store_filled_keys_total", "link" => id.clone()).absolute(s.filled);
        counter!("qkdn_key_store_consumed_keys_total", "link" => id.clone()).absolute(s.consumed);
        counter!("qkdn_key_store_dropped_keys_total", "link" => id.clone()).absolute(s.dropped);
        if let Some(h) = health.get(&s.link) {
            gauge!("qkdn_key_store_fill_ratio", "link" => id.clone()).set(h.fill_ratio);
            gauge!("qkdn_key_store_fill_bps", "link" => id.clone()).set(h.fill_bps);
            gauge!("qkdn_key_store_consumption_bps", "link" => id.clone()).set(h.consumption_bps);
            for (level, name) in [
                (crate::kms::health::FillAlarm::Low, "low"),
                (crate::kms::health::FillAlarm::High, "high"),
            ] {
                let on = h.alarms.contains(&level);
                gauge!("qkdn_key_store_alarm", "link" => id.clone(), "level" => name)
                    .set(f64::from(u8::from(on)));
            }
        }
    }
}

fn relays(kms: &KmsView) {
    describe_counter!("qkdn_relay_total", "Key relays this node sourced over the virtual link.");
    describe_counter!("qkdn_relay_keys_total", "Keys relayed over the virtual link.");
    describe_counter!("qkdn_relay_failures_total", "Relays that failed.");
    describe_gauge!("qkdn_relay_latency_seconds", "End-to-end relay latency (quantiles).");
    for r in kms.relay.stats.report() {
        let id = r.link.to_string();
        counter!("qkdn_relay_total", "link" => id.clone()).absolute(r.relays);
        counter!("qkdn_relay_keys_total", "link" => id.clone()).absolute(r.keys);
        counter!("qkdn_relay_failures_total", "link" => id.clone()).absolute(r.failures);
        for (q, ms) in
            [("0.5", r.latency_p50_ms), ("0.99", r.latency_p99_ms), ("1", r.latency_max_ms)]
        {
            gauge!("qkdn_relay_latency_seconds", "link" => id.clone(), "quantile" => q)
                .set(ms / 1000.0);
        }
    }
}

fn key_interfaces(kms: &KmsView) {
    describe_counter!(
        "qkdn_kms_key_requests_total",
        "Key requests per key interface (etsi014, skip), operation (issue: new keys for a \
         master; redeem: keys by ID for a slave) and outcome (delivered, refused)."
    );
    describe_counter!(
        "qkdn_kms_keys_delivered_total",
        "Keys handed out per key interface and operation."
    );
    for line in kms.interfaces.snapshot() {
        let (interface, operation) = (line.interface.as_str(), line.operation.as_str());
        for (outcome, count) in [("delivered", line.delivered), ("refused", line.refused)] {
            counter!("qkdn_kms_key_requests_total", "interface" => interface,
                "operation" => operation, "outcome" => outcome)
            .absolute(count);
        }
        counter!("qkdn_kms_keys_delivered_total", "interface" => interface, "operation" => operation)
            .absolute(line.keys);
    }
}

fn deliveries(kms: &KmsView) {
    describe_counter!("qkdn_delivery_requests_total", "ETSI 014 key requests of the application.");
    describe_counter!("qkdn_delivery_keys_total", "Keys delivered to the application.");
    describe_counter!("qkdn_delivery_bits_total", "Key bits delivered to the application.");
    describe_counter!("qkdn_delivery_failures_total", "Key requests that failed.");
    describe_gauge!("qkdn_delivery_latency_seconds", "Key request latency (quantiles).");
    for d in kms.usage.report() {
        let id = d.app.to_string();
        counter!("qkdn_delivery_requests_total", "app" => id.clone()).absolute(d.requests);
        counter!("qkdn_delivery_keys_total", "app" => id.clone()).absolute(d.keys);
        counter!("qkdn_delivery_bits_total", "app" => id.clone()).absolute(d.consumed_bits);
        counter!("qkdn_delivery_failures_total", "app" => id.clone()).absolute(d.failed);
        for (q, ms) in [("0.5", d.latency_p50_ms), ("0.99", d.latency_p99_ms)] {
            gauge!("qkdn_delivery_latency_seconds", "app" => id.clone(), "quantile" => q)
                .set(ms / 1000.0);
        }
    }
}
