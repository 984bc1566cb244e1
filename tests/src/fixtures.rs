//! Third-party ETSI 015 servers for tests: the foundation's example RESTCONF server loaded
//! with TeraFlowSDN's `qkd_end2end` node fixtures (`../shared/reference/tfs-data/`).

use std::path::Path;

use serde_json::Value as Json;

use crate::process::{Process, binary, repo};

/// The `qkd_end2end` fixture of node `n` (1 to 3), without the mock server's own settings.
pub fn tfs_node(n: usize) -> Json {
    let path = repo()
        .parent()
        .unwrap()
        .join(format!("shared/reference/tfs-data/qkd_end2end/qkd-node-0{n}.json"));
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["etsi-qkd-sdn-node"].clone()
}

/// Three example servers serving the three fixture nodes (plain HTTP on loopback, key rates
/// drifting every second); their processes and base URLs.
pub fn start_tfs_servers(dir: &Path) -> (Vec<Process>, Vec<String>) {
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for n in 1..=3 {
        let file = dir.join(format!("qkd-node-0{n}.json"));
        std::fs::write(&file, tfs_node(n).to_string()).unwrap();
        let server = Process::start_service(
            &binary("restconf-serve"),
            &[
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--perf-interval".into(),
                "1".into(),
                file.display().to_string(),
            ],
            &dir.join(format!("qkd{n}.log")),
            "serving RESTCONF",
        );
        let port = server.port("restconf");
        servers.push(server);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    (servers, urls)
}
