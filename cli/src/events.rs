//! `qkdn events [--follow]`: a controller's alarms and events. Without `--follow` it prints the
//! recent ones (`GET /api/v1/events`). With `--follow` it first subscribes to the controller's
//! Server-Sent Events stream (`/api/v1/events/stream`), then prints the recent events, then each
//! new one as the controller raises it; when the stream breaks it reconnects with backoff and
//! reads the recent events again, so a short outage loses nothing and nothing is printed twice.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use qkdn_yang::restconf::sse::SseParser;
use serde_json::Value as Json;

use crate::cell::text;
use crate::client::{Client, Failure};

/// How many events are remembered to recognise repeats.
const REMEMBERED: usize = 10_000;

/// The longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where the events come from and how they are printed.
pub(crate) struct EventPrinter<'a> {
    /// The controller.
    pub(crate) client: &'a Client,
    /// Its REST root (`https://host:port/api/v1`).
    pub(crate) rest: &'a str,
    /// Node names to show instead of ids.
    pub(crate) names: &'a BTreeMap<String, String>,
    /// One JSON object per line instead of text.
    pub(crate) json: bool,
    seen: Seen,
}

impl<'a> EventPrinter<'a> {
    /// A printer for `rest` through `client`.
    pub(crate) fn new(
        client: &'a Client,
        rest: &'a str,
        names: &'a BTreeMap<String, String>,
        json: bool,
    ) -> EventPrinter<'a> {
        EventPrinter { client, rest, names, json, seen: Seen::default() }
    }

    /// Prints the recent events, and with `follow` every new one until interrupted.
    pub(crate) async fn run(mut self, follow: bool) -> Result<(), Failure> {
        if !follow {
            return self.recent().await;
        }
        let url = format!("{}/events/stream", self.rest);
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.client.stream(&url).await {
                Ok(mut response) => {
                    // Subscribed: what was raised before is in the recent events.
                    self.recent().await?;
                    backoff = Duration::from_millis(500);
                    let mut parser = SseParser::default();
                    while let Ok(Some(chunk)) = response.chunk().await {
                        for event in parser.push(&chunk) {
                            if let Ok(e) = serde_json::from_str::<Json>(&event.data) {
                                self.print(&e);
                            }
                        }
                    }
                    eprintln!("qkdn: the event stream of {} ended; reconnecting", self.rest);
                }
                Err(refused @ Failure::Refused { .. }) => return Err(refused),
                Err(Failure::Trouble(e)) => eprintln!("qkdn: {e}; trying again in {backoff:?}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Prints the recent events not printed yet.
    async fn recent(&mut self) -> Result<(), Failure> {
        let events = self.client.get(&format!("{}/events", self.rest)).await?;
        for e in events["events"].as_array().into_iter().flatten() {
            self.print(e);
        }
        Ok(())
    }

    /// Prints `e` unless it was printed already.
    fn print(&mut self, e: &Json) {
        if !self.seen.insert(e.to_string()) {
            return;
        }
        let line = if self.json {
            format!("{e}\n")
        } else {
            let mut message = text(&e["message"]);
            for (id, name) in self.names {
                message = message.replace(id, name);
            }
            format!(
                "{}  {:<7} {:<22} {}\n",
                text(&e["time"]),
                text(&e["severity"]),
                text(&e["kind"]),
                message
            )
        };
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// The events printed lately, oldest forgotten first.
#[derive(Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    /// True when `key` is new (and remembers it).
    fn insert(&mut self, key: String) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_recognised_and_old_ones_forgotten() {
        let mut seen = Seen::default();
        assert!(seen.insert("a".into()));
        assert!(!seen.insert("a".into()));
        for i in 0..REMEMBERED {
            assert!(seen.insert(i.to_string()));
        }
        assert_eq!(seen.set.len(), REMEMBERED);
        assert!(seen.insert("a".into()), "forgotten after REMEMBERED newer ones");
    }
}
