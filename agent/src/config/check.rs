//! The checks a configuration must pass beyond its types: identifiers unique and referenced
//! things present, values in range, files present, every listener authenticating its callers
//! (plain HTTP only on loopback, and then only with `insecure_allow_unauthenticated`). Every
//! problem is collected, so `check-config` can list them all at once.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::model::*;
use qkdn_kit::config::KeyPath;

/// Every problem of `config`, as (key path, message).
pub(crate) fn check(config: &AgentConfig) -> Vec<(KeyPath, String)> {
    let mut out = Vec::new();
    let root = KeyPath::default();
    let mut problem = |path: KeyPath, message: String| out.push((path, message));

    if config.node.id.is_nil() {
        problem(root.key("node").key("id"), "the nil UUID is not a node id".into());
    }
    if config.data_dir.as_os_str().is_empty() {
        problem(root.key("data_dir"), "expected a directory for the agent's state".into());
    }
    if let Some(path) = &config.startup_data {
        check_file(&mut problem, root.key("startup_data"), path);
    }
    for (field, message) in
        restconf_listener(config).problems(config.insecure_allow_unauthenticated)
    {
        problem(field.split('.').fold(root.key("restconf"), |at, k| at.key(k)), message);
    }
    if let Some(tls) = &config.restconf.tls {
        let at = root.key("restconf").key("tls");
        check_file(&mut problem, at.key("cert"), &tls.cert);
        check_file(&mut problem, at.key("key"), &tls.key);
        if let Some(ca) = &tls.client_ca {
            check_file(&mut problem, at.key("client_ca"), ca);
        }
        let files_present = tls.cert.is_file()
            && tls.key.is_file()
            && tls.client_ca.as_ref().is_none_or(|ca| ca.is_file());
        if files_present
            && let Err(e) =
                qkdn_kit::tls::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref())
        {
            problem(at, e.to_string());
        }
    }
    if let Some(url) = &config.restconf.advertised_url {
        check_url(&mut problem, root.key("restconf").key("advertised_url"), url);
    }
    for (i, url) in config.controller.urls.iter().enumerate() {
        check_url(&mut problem, root.key("controller").key("urls").index(i), url);
    }
    for (i, domain) in config.controller.domains.iter().enumerate() {
        if let Err(e) = qkdn_kit::Identity::Controller(domain.clone()).validate() {
            problem(root.key("controller").key("domains").index(i), e.to_string());
        }
    }
    if !config.controller.urls.is_empty()
        && config.controller.domains.is_empty()
        && restconf_listener(config).authenticates()
    {
        problem(
            root.key("controller").key("domains"),
            "the node registers with a controller, but no controller domain may write its configuration: list the controller's domain (its certificate's urn:qkdn:controller:<domain>)".into(),
        );
    }
    if let Some(tls) = &config.controller.tls {
        check_client_tls(&mut problem, root.key("controller").key("tls"), tls);
    }
    check_peer(config, &mut problem);
    if let Some(kms) = &config.kms {
        check_kms(kms, &mut problem);
    }
    if config.notifications.performance_period.as_millis() < 100 {
        problem(
            root.key("notifications").key("performance_period"),
            format!("{:?}: expected at least 100ms", config.notifications.performance_period),
        );
    }

    check_simulator(config, &mut problem);

    let mut interface_at: HashMap<u32, usize> = HashMap::new();
    for (i, iface) in config.interfaces.iter().enumerate() {
        let at = root.key("interfaces").index(i);
        if let Some(first) = interface_at.insert(iface.id, i) {
            problem(at.key("id"), format!("{}: already the id of interfaces[{first}]", iface.id));
        }
        if let Some(range) = &iface.wavelength_range
            && !valid_wavelength_range(range)
        {
            problem(
                at.key("wavelength_range"),
                format!(
                    "\"{range}\": expected channels 1 to 9999 and ranges, ascending, like \"1,12-20,40\""
                ),
            );
        }
        if let Some(max) = iface.max_absorption_db
            && !(0.0..=1000.0).contains(&max)
        {
            problem(at.key("max_absorption_db"), format!("{max}: expected 0 to 1000 dB"));
        }
        match &iface.device {
            Some(DeviceConfig::Simulator(sim)) => {
                check_sim_device(&mut problem, at.key("device"), sim)
            }
            Some(DeviceConfig::Etsi014(dev)) => check_etsi014(&mut problem, at.key("device"), dev),
            None => {}
        }
    }

    let mut link_at: HashMap<uuid::Uuid, usize> = HashMap::new();
    let mut interface_link: HashMap<u32, usize> = HashMap::new();
    for (i, link) in config.links.iter().enumerate() {
        let at = root.key("links").index(i);
        if let Some(first) = link_at.insert(link.id, i) {
            problem(at.key("id"), format!("{}: already the id of links[{first}]", link.id));
        }
        match interface_at.get(&link.local_interface) {
            None => {
                let mut known: Vec<u32> = config.interfaces.iter().map(|f| f.id).collect();
                known.sort_unstable();
                problem(
                    at.key("local_interface"),
                    format!(
                        "{}: no such interface (configured: {})",
                        link.local_interface,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                        }
                    ),
                );
            }
            Some(iface) => {
                if let Some(first) = interface_link.insert(link.local_interface, i) {
                    problem(
                        at.key("local_interface"),
                        format!(
                            "{}: interface already carries links[{first}]; a QKD module serves one physical link",
                            link.local_interface
                        ),
                    );
                }
                if let Some(max) = config.interfaces[*iface].max_absorption_db
                    && link.attenuation_db() > max
                {
                    problem(
                        at.key("channel_attenuation_db"),
                        format!(
                            "{:.3} dB exceeds max_absorption_db {max} of interface {}",
                            link.attenuation_db(),
                            link.local_interface
                        ),
                    );
                }
            }
        }
        if link.remote_node == config.node.id {
            problem(
                at.key("remote_node"),
                format!("{}: a link cannot end at its own node", link.remote_node),
            );
        }
        if !(1..=9999).contains(&link.wavelength) {
            problem(
                at.key("wavelength"),
                format!("{}: expected a WDM channel from 1 to 9999", link.wavelength),
            );
        }
        if let Some(a) = link.channel_attenuation_db
            && !(0.0..=1000.0).contains(&a)
        {
            problem(at.key("channel_attenuation_db"), format!("{a}: expected 0 to 1000 dB"));
        }
        if let Some(l) = link.length_km
            && !(0.0..=100_000.0).contains(&l)
        {
            problem(at.key("length_km"), format!("{l}: expected 0 to 100000 km"));
        }
        if !(0.0..=10.0).contains(&link.attenuation_db_per_km) {
            problem(
                at.key("attenuation_db_per_km"),
                format!("{}: expected 0 to 10 dB/km", link.attenuation_db_per_km),
            );
        }
        if link.channel_attenuation_db.is_none() && link.length_km.is_none() {
            problem(at.clone(), "expected channel_attenuation_db or length_km".into());
        }
    }
    for (i, event) in config.simulator.events.iter().enumerate() {
        let at = root.key("simulator").key("events").index(i);
        if !link_at.contains_key(&event.link) {
            problem(at.key("link"), format!("{}: no such link in links", event.link));
        }
        match (event.kind, event.value) {
            (SimEventKind::Qber, Some(v)) if (0.0..=0.5).contains(&v) => {}
            (SimEventKind::Qber, Some(v)) => {
                problem(at.key("value"), format!("{v}: expected an error rate from 0 to 0.5"))
            }
            (SimEventKind::Qber, None) => {
                problem(at.key("value"), "a qber event needs a value (0 to 0.5)".into())
            }
            (_, Some(_)) => problem(at.key("value"), "only qber events take a value".into()),
            (_, None) => {}
        }
    }
    out
}

fn check_simulator(config: &AgentConfig, problem: &mut impl FnMut(KeyPath, String)) {
    let at = KeyPath::default().key("simulator");
    let sim = &config.simulator;
    let uses_simulator =
        config.interfaces.iter().any(|i| matches!(i.device, Some(DeviceConfig::Simulator(_))));
    match &sim.network_secret {
        Some(secret) if secret.len() == 64 && secret.chars().all(|c| c.is_ascii_hexdigit()) => {}
        Some(_) => {
            problem(at.key("network_secret"), "expected 64 hexadecimal digits (32 bytes)".into())
        }
        None if uses_simulator => problem(
            at.key("network_secret"),
            "simulated devices need it: 64 hexadecimal digits shared by every node of the network"
                .into(),
        ),
        None => {}
    }
    if let Some(epoch) = &sim.epoch
        && humantime::parse_rfc3339_weak(epoch).is_err()
    {
        problem(
            at.key("epoch"),
            format!("\"{epoch}\": expected an RFC 3339 time like 2026-01-01T00:00:00Z"),
        );
    }
    if !(sim.time_scale > 0.0 && sim.time_scale <= 1.0e6) {
        problem(
            at.key("time_scale"),
            format!("{}: expected more than 0 and at most 1000000", sim.time_scale),
        );
    }
    if sim.slot.as_millis() < 1 || sim.slot.as_secs() > 3600 {
        problem(at.key("slot"), format!("{:?}: expected 1ms to 1h", sim.slot));
    }
}

fn check_sim_device(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, d: &SimDevice) {
    let mut range = |key: &str, v: f64, lo: f64, hi: f64, open_lo: bool| {
        let ok = if open_lo { v > lo && v <= hi } else { v >= lo && v <= hi };
        if !ok {
            let bound = if open_lo { "more than" } else { "at least" };
            problem(at.key(key), format!("{v}: expected {bound} {lo} and at most {hi}"));
        }
    };
    range("pulse_rate_hz", d.pulse_rate_hz, 0.0, 1.0e11, true);
    range("mean_photon_number", d.mean_photon_number, 0.0, 10.0, true);
    range("detector_efficiency", d.detector_efficiency, 0.0, 1.0, true);
    range("dark_count_probability", d.dark_count_probability, 0.0, 0.1, false);
    range("misalignment_error", d.misalignment_error, 0.0, 0.5, false);
    range("error_correction_efficiency", d.error_correction_efficiency, 1.0, 3.0, false);
    range("abort_qber", d.abort_qber, 0.0, 0.5, true);
    check_key_size(problem, at.key("key_size_bits"), d.key_size_bits);
}

fn check_key_size(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, bits: u32) {
    if !bits.is_multiple_of(8) || !(64..=8192).contains(&bits) {
        problem(at, format!("{bits}: expected a multiple of 8 from 64 to 8192"));
    }
}

fn check_kms(kms: &KmsConfig, problem: &mut impl FnMut(KeyPath, String)) {
    let at = KeyPath::default().key("kms");
    let tls = &kms.tls;
    check_file(problem, at.key("tls").key("cert"), &tls.cert);
    check_file(problem, at.key("tls").key("key"), &tls.key);
    match &tls.client_ca {
        None => problem(
            at.key("tls").key("client_ca"),
            "ETSI GS QKD 014 requires mutual TLS: expected the CA of the SAEs' certificates".into(),
        ),
        Some(ca) => {
            check_file(problem, at.key("tls").key("client_ca"), ca);
            if tls.cert.is_file()
                && tls.key.is_file()
                && ca.is_file()
                && let Err(e) = qkdn_kit::tls::server_config(&tls.cert, &tls.key, Some(ca))
            {
                problem(at.key("tls"), e.to_string());
            }
        }
    }
    if let Some(file) = &kms.store_key_file {
        check_file(problem, at.key("store_key_file"), file);
    }
    for file in &kms.previous_store_key_files {
        check_file(problem, at.key("previous_store_key_files"), file);
    }
    for (key, value) in [
        ("key_size_bits", kms.key_size_bits),
        ("min_key_size_bits", kms.min_key_size_bits),
        ("max_key_size_bits", kms.max_key_size_bits),
    ] {
        if value == 0 || !value.is_multiple_of(8) {
            problem(at.key(key), format!("{value}: expected a positive multiple of 8"));
        }
    }
    if !(kms.min_key_size_bits..=kms.max_key_size_bits).contains(&kms.key_size_bits) {
        problem(
            at.key("key_size_bits"),
            format!(
                "{}: expected between min_key_size_bits ({}) and max_key_size_bits ({})",
                kms.key_size_bits, kms.min_key_size_bits, kms.max_key_size_bits
            ),
        );
    }
    if kms.max_keys_per_request == 0 {
        problem(at.key("max_keys_per_request"), "0: expected at least 1".into());
    }
    if kms.store_capacity < 2 {
        problem(at.key("store_capacity"), format!("{}: expected at least 2", kms.store_capacity));
    }
    let (low, high) = (kms.store_low_watermark, kms.store_high_watermark);
    if !(0.0..1.0).contains(&low) {
        problem(
            at.key("store_low_watermark"),
            format!("{low}: expected a share from 0 to below 1"),
        );
    }
    if !(high > 0.0 && high <= 1.0) {
        problem(
            at.key("store_high_watermark"),
            format!("{high}: expected a share above 0, at most 1"),
        );
    } else if low >= high {
        problem(
            at.key("store_low_watermark"),
            format!("{low}: expected below store_high_watermark ({high})"),
        );
    }
    for (key, value) in [
        ("default_max_bandwidth_bps", kms.default_max_bandwidth_bps),
        ("default_min_bandwidth_bps", kms.default_min_bandwidth_bps),
    ] {
        if value == 0 {
            problem(
                at.key(key),
                "0: expected a rate above 0 bit/s (every SAE pair has one)".into(),
            );
        }
    }
    if kms.sae_identity == SaeIdentity::Fingerprint && kms.sae_fingerprints.is_empty() {
        problem(
            at.key("sae_fingerprints"),
            "sae_identity = \"fingerprint\" needs the table of certificate fingerprints".into(),
        );
    }
    for fingerprint in kms.sae_fingerprints.keys() {
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            problem(
                at.key("sae_fingerprints").key(fingerprint),
                format!("\"{fingerprint}\": expected a SHA-256 fingerprint (64 hex digits)"),
            );
        }
    }
    if let Some(skip) = &kms.skip {
        check_skip(skip, at.key("skip"), problem);
    }
}

fn check_skip(skip: &SkipConfig, at: KeyPath, problem: &mut impl FnMut(KeyPath, String)) {
    if skip.listen.is_none() && skip.psk_listen.is_none() {
        problem(at.clone(), "expected listen, psk_listen or both".into());
    }
    match (skip.psk_listen.is_some(), skip.psk.is_empty()) {
        (true, true) => problem(
            at.key("psk"),
            "psk_listen needs at least one encryptor's pre-shared key".into(),
        ),
        (false, false) => problem(
            at.key("psk_listen"),
            "pre-shared keys are listed but no psk_listen address serves them".into(),
        ),
        _ => {}
    }
    let mut identities = std::collections::BTreeSet::new();
    for (i, psk) in skip.psk.iter().enumerate() {
        let entry = at.key("psk").index(i);
        if !identities.insert(psk.psk_identity()) {
            problem(entry.key("identity"), format!("{:?} is listed twice", psk.psk_identity()));
        }
        if psk.sae.is_empty() {
            problem(entry.key("sae"), "expected the encryptor's SAE ID".into());
        }
        check_file(problem, entry.key("key_file"), &psk.key_file);
        if psk.key_file.is_file()
            && let Err(e) = crate::kms::skip_psk::read_key(&psk.key_file)
        {
            problem(entry.key("key_file"), e.to_string());
        }
    }
}

/// The RESTCONF listener, for the authentication check.
pub(crate) fn restconf_listener(config: &AgentConfig) -> qkdn_kit::listener::ListenerSettings<'_> {
    let restconf = &config.restconf;
    qkdn_kit::listener::ListenerSettings::new("restconf", restconf.listen, restconf.tls.as_ref())
}

/// The peer listener, for the authentication check.
pub(crate) fn peer_listener(
    config: &AgentConfig,
) -> Option<qkdn_kit::listener::ListenerSettings<'_>> {
    let tls = config.peer.tls.as_ref();
    config.peer.listen.map(|listen| qkdn_kit::listener::ListenerSettings::new("peer", listen, tls))
}

fn check_peer(config: &AgentConfig, problem: &mut impl FnMut(KeyPath, String)) {
    let root = KeyPath::default();
    let peer = &config.peer;
    if let Some(listener) = peer_listener(config) {
        for (field, message) in listener.problems(config.insecure_allow_unauthenticated) {
            problem(field.split('.').fold(root.key("peer"), |at, k| at.key(k)), message);
        }
    }
    if let Some(tls) = &peer.tls {
        let at = root.key("peer").key("tls");
        check_file(problem, at.key("cert"), &tls.cert);
        check_file(problem, at.key("key"), &tls.key);
        if let Some(ca) = &tls.client_ca {
            check_file(problem, at.key("client_ca"), ca);
        }
    }
    if let Some(tls) = &peer.client_tls {
        check_client_tls(problem, root.key("peer").key("client_tls"), tls);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, n) in config.neighbours.iter().enumerate() {
        let at = root.key("neighbours").index(i);
        if !seen.insert(n.node) {
            problem(at.key("node"), format!("{}: listed twice", n.node));
        }
        if n.node == config.node.id {
            problem(at.key("node"), format!("{}: this is the node itself", n.node));
        }
        check_url(problem, at.key("url"), &n.url);
        if n.url.starts_with("https://") && peer.client_tls.is_none() {
            problem(at.key("url"), format!("\"{}\": https needs peer.client_tls", n.url));
        }
        if n.url.starts_with("http://") && !config.insecure_allow_unauthenticated {
            problem(
                at.key("url"),
                format!(
                    "\"{}\": the peer service runs over TLS (https); plain HTTP/2 to loopback needs insecure_allow_unauthenticated = true",
                    n.url
                ),
            );
        }
    }
    // ETSI 014 devices exchange key IDs with the other end of each of their links.
    for (i, link) in config.links.iter().enumerate() {
        let device = config
            .interfaces
            .iter()
            .find(|f| f.id == link.local_interface)
            .and_then(|f| f.device.as_ref());
        let Some(DeviceConfig::Etsi014(d)) = device else {
            continue;
        };
        let at = root.key("links").index(i);
        match d.role {
            KeyRole::Master if !config.neighbours.iter().any(|n| n.node == link.remote_node) => {
                problem(
                    at.key("remote_node"),
                    format!(
                        "{}: the ETSI 014 master end sends key IDs to the other end; add it to [[neighbours]]",
                        link.remote_node
                    ),
                );
            }
            KeyRole::Slave if peer.listen.is_none() => problem(
                at.key("local_interface"),
                format!(
                    "{}: the ETSI 014 slave end receives key IDs from the other end; set peer.listen",
                    link.local_interface
                ),
            ),
            _ => {}
        }
    }
}

fn check_etsi014(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, d: &Etsi014Device) {
    if !d.kme_url.starts_with("https://") {
        problem(
            at.key("kme_url"),
            format!(
                "\"{}\": ETSI GS QKD 014 runs over HTTPS; expected https://host[:port]",
                d.kme_url
            ),
        );
    }
    if d.sae_id.trim().is_empty() {
        problem(at.key("sae_id"), "expected this agent's SAE ID at the KME".into());
    }
    if d.peer_sae_id.trim().is_empty() {
        problem(at.key("peer_sae_id"), "expected the SAE ID of the agent at the other end".into());
    }
    check_key_size(problem, at.key("key_size_bits"), d.key_size_bits);
    if d.keys_per_request == 0 || d.keys_per_request > 1024 {
        problem(at.key("keys_per_request"), format!("{}: expected 1 to 1024", d.keys_per_request));
    }
    if d.poll_interval.as_millis() < 10 {
        problem(at.key("poll_interval"), format!("{:?}: expected at least 10ms", d.poll_interval));
    }
    check_client_tls(problem, at.key("tls"), &d.tls);
}

fn check_client_tls(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, tls: &ClientTls) {
    check_file(problem, at.key("cert"), &tls.cert);
    check_file(problem, at.key("key"), &tls.key);
    check_file(problem, at.key("ca"), &tls.ca);
    if tls.cert.is_file()
        && tls.key.is_file()
        && tls.ca.is_file()
        && let Err(e) = qkdn_kit::tls::client_config(&tls.ca, Some((&tls.cert, &tls.key)))
    {
        problem(at, e.to_string());
    }
}

fn check_file(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, path: &std::path::Path) {
    if !path.is_file() {
        problem(at, format!("{}: no such file", path.display()));
    }
}

fn check_url(problem: &mut impl FnMut(KeyPath, String), at: KeyPath, url: &str) {
    let Some((scheme, rest)) = url.split_once("://") else {
        problem(at, format!("\"{url}\": expected http(s)://host:port"));
        return;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host_only = host.rsplit_once(':').map_or(host, |(h, _)| h).trim_matches(['[', ']']);
    if host_only.is_empty() {
        problem(at, format!("\"{url}\": no host"));
        return;
    }
    match scheme {
        "https" => {}
        "http" => {
            let loopback = host_only == "localhost"
                || host_only.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
                || format!("{host_only}:0")
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback());
            if !loopback {
                problem(
                    at,
                    format!("\"{url}\": plain HTTP is allowed to loopback only; use https"),
                );
            }
        }
        other => problem(at, format!("\"{url}\": scheme {other} is not http or https")),
    }
}

/// Whether `range` is a WDM channel set like `1,12-20,40`.
fn valid_wavelength_range(range: &str) -> bool {
    let channel = |s: &str| {
        s.len() <= 4
            && !s.starts_with('0')
            && s.parse::<u32>().is_ok_and(|c| (1..=9999).contains(&c))
    };
    !range.is_empty()
        && range.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => channel(a) && channel(b),
            None => channel(part),
        })
}
