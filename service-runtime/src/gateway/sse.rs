//! A small incremental parser of `text/event-stream` bodies.

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(SseEvent {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                    });
                    self.data.clear();
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "data" => self.data.push(value.to_string()),
                "event" => self.event = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }

    /// Bytes held for events not yet complete; a bound on it keeps a provider that never
    /// ends an event from filling memory.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.data.iter().map(String::len).sum::<usize>()
    }

    /// Flushes an event left unterminated at the end of the body.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            rest.push(b'\n');
        }
        let mut events = self.push(&rest);
        if !self.data.is_empty() {
            events.push(SseEvent {
                event: self.event.take(),
                data: self.data.join("\n"),
            });
            self.data.clear();
        }
        events.pop()
    }
}

/// Encodes one `data:` event.
pub fn data_event(data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("data: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: message_start\ndata: {\"a\"").is_empty());
        let ev = p.push(b":1}\n\n: comment\ndata: x\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(
            ev,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        p.push(b"data: tail");
        assert_eq!(
            p.finish(),
            Some(SseEvent {
                event: None,
                data: "tail".into()
            })
        );
    }
}
