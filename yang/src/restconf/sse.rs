//! A parser for `text/event-stream` (Server-Sent Events), as RESTCONF event streams use.

/// One event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// `event:` field.
    pub(crate) event: Option<String>,
    /// `data:` lines, joined with newlines.
    pub(crate) data: String,
    /// `id:` field.
    pub(crate) id: Option<String>,
}

/// Incremental parser: feed chunks as they arrive, collect complete events.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    pending: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.current));
                }
                self.current = SseEvent::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                "event" => self.current.event = Some(value.to_owned()),
                "id" => self.current.id = Some(value.to_owned()),
                _ => {}
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines() {
        let mut p = SseParser::default();
        assert!(p.push(b": hello\n\ndata: {\"a\"").is_empty());
        let events = p.push(b":1}\r\ndata: x\n\nevent: e\ndata:y\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].data, "{\"a\":1}\nx");
        assert_eq!(events[1].event.as_deref(), Some("e"));
        assert_eq!(events[1].data, "y");
    }
}
