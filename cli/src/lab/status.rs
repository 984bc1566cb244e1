//! What the lab shows while it runs: one snapshot of every controller's nodes, links (up, SKR,
//! key stock, reservations), application paths, key deliveries and recent alarms, with node
//! and link ids replaced by the topology's names. On a terminal it is redrawn in place; without
//! one, only new alarms and events are printed, one line each.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;

use super::plan::Plan;
use crate::client::Client;
use crate::labfile::LabFile;

/// Names for the ids the services report.
pub(crate) struct Names {
    nodes: BTreeMap<String, String>,
    links: BTreeMap<String, String>,
    /// Demo applications by their SAEs (`sae-a->sae-d`).
    apps: BTreeMap<String, String>,
}

impl Names {
    /// From the plan.
    pub(crate) fn new(plan: &Plan) -> Names {
        Names {
            nodes: plan.nodes.iter().map(|n| (n.id.clone(), n.name.clone())).collect(),
            links: plan
                .links
                .iter()
                .map(|l| (l.id.clone(), format!("{}-{}", l.ends[0].0, l.ends[1].0)))
                .collect(),
            apps: plan
                .apps
                .iter()
                .map(|a| (a.id.clone(), format!("{}->{}", a.master.0, a.slave.0)))
                .collect(),
        }
    }

    /// The name of node `id` (the id when unknown).
    pub(crate) fn node(&self, id: &Json) -> String {
        let id = id.as_str().unwrap_or_default();
        self.nodes.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// The name of link `id`.
    pub(crate) fn link(&self, id: &Json) -> String {
        let id = id.as_str().unwrap_or_default();
        self.links.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// `text` with every known id replaced by its name.
    pub(crate) fn rename(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (id, name) in self.nodes.iter().chain(&self.links).chain(&self.apps) {
            out = out.replace(id, name);
        }
        out
    }
}

/// What one look at the controllers found.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// Per controller: (domain, nodes, links, paths, monitoring, events) or why not.
    pub(crate) domains: Vec<(String, Result<[Json; 5], String>)>,
}

impl Snapshot {
    /// Reads every controller of the lab.
    pub(crate) async fn take(client: &Client, lab: &LabFile) -> Snapshot {
        let mut domains = Vec::new();
        for c in &lab.controllers {
            let mut parts = Vec::new();
            let mut error = None;
            for path in ["nodes", "links", "paths", "monitoring", "events"] {
                match client.get(&format!("{}/{path}", c.rest)).await {
                    Ok(v) => parts.push(v),
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let domain = c.domain.clone().unwrap_or_default();
            let result = match error {
                Some(e) => Err(e),
                None => Ok(parts.try_into().unwrap_or_default()),
            };
            domains.push((domain, result));
        }
        Snapshot { domains }
    }

    /// Every event of every domain (domain, event).
    pub(crate) fn events(&self) -> Vec<(String, Json)> {
        let mut all = Vec::new();
        for (domain, r) in &self.domains {
            if let Ok([_, _, _, _, events]) = r {
                for e in events["events"].as_array().into_iter().flatten() {
                    all.push((domain.clone(), e.clone()));
                }
            }
        }
        all.sort_by(|a, b| a.1["time"].as_str().cmp(&b.1["time"].as_str()));
        all
    }
}

/// One event as a line.
pub(crate) fn event_line(names: &Names, domain: &str, e: &Json) -> String {
    names.rename(&format!(
        "{} {:<8} {:<7} {} {}",
        e["time"].as_str().unwrap_or_default(),
        domain,
        e["severity"].as_str().unwrap_or_default(),
        e["kind"].as_str().unwrap_or_default(),
        e["message"].as_str().unwrap_or_default()
    ))
}

fn kbps(bits: u64) -> String {
    format!("{:.1} kbit/s", bits as f64 / 1000.0)
}

/// The full status screen.
pub(crate) fn render(snapshot: &Snapshot, names: &Names, lab: &LabFile, dead: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "qkdn lab '{}' ({} nodes)   data: {}   Ctrl-C stops",
        lab.topology,
        lab.nodes.len(),
        lab.data_dir.display()
    );
    for d in dead {
        let _ = writeln!(out, "  !! {d}");
    }
    for (domain, result) in &snapshot.domains {
        let _ = writeln!(out, "\n== domain {domain}");
        let [nodes, links, paths, monitoring, _] = match result {
            Ok(parts) => parts,
            Err(e) => {
                let _ = writeln!(out, "  controller not answering: {e}");
                continue;
            }
        };
        let node_list: Vec<String> = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "{}{}",
                    names.node(&n["node_id"]),
                    if n["reachable"] == true { "" } else { " (LOST)" }
                )
            })
            .collect();
        let _ = writeln!(out, "  nodes  {}", node_list.join("  "));
        let _ = writeln!(
            out,
            "  {:<14} {:<5} {:>14} {:>11} {:>14} {:>7}",
            "link", "state", "SKR", "key stock", "reserved", "QBER"
        );
        for l in links["links"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<14} {:<5} {:>14} {:>11} {:>14} {:>7}",
                names.link(&l["link_id"]),
                if l["up"] == true { "up" } else { "DOWN" },
                kbps(l["skr_bps"].as_u64().unwrap_or(0)),
                link_stock(monitoring, &l["link_id"])
                    .map_or("-".to_owned(), |s| format!("{s} keys")),
                kbps(l["reserved_bps"].as_u64().unwrap_or(0)),
                l["qber"].as_f64().map_or("-".to_owned(), |q| format!("{:.2} %", q * 100.0)),
            );
        }
        for p in paths["paths"].as_array().into_iter().flatten() {
            let hops: Vec<String> =
                p["nodes"].as_array().into_iter().flatten().map(|n| names.node(n)).collect();
            let app = p["application"].as_str().unwrap_or_default();
            let delivered = monitoring["applications"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["app_id"] == p["application"]))
                .map(|a| {
                    a["deliveries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|d| d["delivered"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
                .unwrap_or(0);
            let label = lab
                .apps
                .iter()
                .find(|a| a.id == app)
                .map_or_else(|| app.to_owned(), |a| format!("{} -> {}", a.master_sae, a.slave_sae));
            let _ = writeln!(
                out,
                "  app {label:<20} {:<9} {}   {} keys delivered",
                p["state"].as_str().unwrap_or_default(),
                hops.join(" - "),
                delivered
            );
        }
    }
    let events = snapshot.events();
    let _ = writeln!(out, "\n== recent alarms and events");
    if events.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (domain, e) in events.iter().rev().take(8) {
        let _ = writeln!(out, "  {}", event_line(names, domain, e));
    }
    out
}

/// The key stock of a link in a controller's `/monitoring` document: the keys held at its
/// emptier end (what relays and deliveries can count on).
pub(crate) fn link_stock(monitoring: &Json, link_id: &Json) -> Option<u64> {
    let link = monitoring["links"].as_array()?.iter().find(|l| l["link_id"] == *link_id)?;
    link["key_stores"].as_array()?.iter().filter_map(|s| s["stored_keys"].as_u64()).min()
}

/// The screen clipped to a terminal of `columns` x `rows`: long lines cut with `…` rather than
/// wrapped (a wrapped line would scroll the screen), and no more lines than fit.
pub(crate) fn fit(screen: &str, columns: usize, rows: usize) -> String {
    let mut out = String::new();
    for line in screen.lines().take(rows.saturating_sub(1).max(1)) {
        if line.chars().count() > columns && columns > 1 {
            out.extend(line.chars().take(columns - 1));
            out.push('…');
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn the_screen_is_clipped_to_the_terminal() {
        let screen = "short\na line far too long for it\nthird\nfourth\n";
        assert_eq!(fit(screen, 10, 4), "short\na line fa…\nthird\n");
        assert_eq!(fit(screen, 80, 40), screen);
        assert_eq!(fit("ünïcödé wide\n", 8, 5), "ünïcödé…\n");
    }
}
