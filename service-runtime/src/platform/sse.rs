//! Reading a `text/event-stream` answer (a model provider's, the gateway's).
//! `eventsource-stream` parses it; the byte stream is framed into lines before it reaches
//! the parser, because the parser by itself would buffer without bound: its UTF-8 decoder
//! keeps every byte after an invalid sequence until the body ends, and nothing limits the
//! size of an event. Framing also hands the parser one line at a time (it copies what
//! follows each line it parses, which is quadratic in the lines of one piece), decodes
//! each line as UTF-8 with replacement characters, and caps what one event may hold.

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt, stream};

/// Why an event stream could not be read to its end.
#[derive(Debug, PartialEq)]
pub enum StreamError {
    /// The body broke off.
    Broken,
    /// It is not an event stream, or an event exceeds the cap.
    Malformed,
}

/// The data of the events of `body`, none of them larger than `cap` bytes. An event left
/// unterminated at the end of the body is delivered too.
pub fn events<S, E>(body: S, cap: usize) -> impl Stream<Item = Result<String, StreamError>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    lines(body, cap).eventsource().map(|event| match event {
        Ok(event) => Ok(event.data),
        Err(EventStreamError::Transport(e)) => Err(e),
        Err(EventStreamError::Utf8(_) | EventStreamError::Parser(_)) => Err(StreamError::Malformed),
    })
}

/// `body` as one piece per line, each ending in a line feed.
fn lines<S, E>(body: S, cap: usize) -> impl Stream<Item = Result<Bytes, StreamError>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut framer = Framer::new(cap);
    body.map(Some)
        .chain(stream::iter([None]))
        .flat_map(move |chunk| {
            stream::iter(match chunk {
                Some(Ok(bytes)) => framer.push(&bytes),
                Some(Err(_)) => framer.broken(),
                None => framer.finish(),
            })
        })
}

/// Splits bytes into lines at CR, LF or CRLF, counting the bytes of the event under way.
struct Framer {
    line: Vec<u8>,
    /// Bytes of the current event's complete lines.
    event: usize,
    cap: usize,
    /// The last chunk ended in CR: an LF starting the next one ends no further line.
    after_cr: bool,
    /// The body broke off or an event exceeded the cap: nothing more is read.
    over: bool,
}

impl Framer {
    fn new(cap: usize) -> Self {
        Self {
            line: Vec::new(),
            event: 0,
            cap,
            after_cr: false,
            over: false,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> Vec<Result<Bytes, StreamError>> {
        if self.over {
            return Vec::new();
        }
        if std::mem::take(&mut self.after_cr) && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        let mut out = Vec::new();
        while let Some(i) = bytes.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&bytes[..i]);
            let end = match (bytes[i], bytes.get(i + 1)) {
                (b'\r', Some(b'\n')) => i + 2,
                (b'\r', None) => {
                    self.after_cr = true;
                    i + 1
                }
                _ => i + 1,
            };
            bytes = &bytes[end..];
            let line = self.end_line();
            let refused = line.is_err();
            out.push(line);
            if refused {
                return out;
            }
        }
        self.line.extend_from_slice(bytes);
        if self.event + self.line.len() > self.cap {
            out.push(self.refuse());
        }
        out
    }

    fn refuse(&mut self) -> Result<Bytes, StreamError> {
        self.over = true;
        self.line = Vec::new();
        Err(StreamError::Malformed)
    }

    fn broken(&mut self) -> Vec<Result<Bytes, StreamError>> {
        self.over = true;
        self.line = Vec::new();
        vec![Err(StreamError::Broken)]
    }

    fn end_line(&mut self) -> Result<Bytes, StreamError> {
        self.event = match self.line.len() {
            0 => 0,
            n => self.event + n + 1,
        };
        if self.event > self.cap {
            return self.refuse();
        }
        let mut text = match String::from_utf8(std::mem::take(&mut self.line)) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        text.push('\n');
        Ok(Bytes::from(text))
    }

    fn finish(&mut self) -> Vec<Result<Bytes, StreamError>> {
        let mut out = Vec::new();
        if self.over {
            return out;
        }
        if !self.line.is_empty() {
            out.push(self.end_line());
        }
        if self.event > 0 {
            out.push(Ok(Bytes::from_static(b"\n")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]], cap: usize) -> Vec<Result<String, StreamError>> {
        let body = stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, ()>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(events(body, cap).collect())
    }

    fn data(chunks: &[&[u8]]) -> Vec<String> {
        read(chunks, 1 << 20)
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn parses_events_split_across_chunks() {
        let got = data(&[
            b"event: message_start\ndata: {\"a\"",
            b":1}\n\n: comment\ndata: x\r\n\r\ndata: [DONE]\n\n",
            b"data: tail",
        ]);
        assert_eq!(got, ["{\"a\":1}", "x", "[DONE]", "tail"]);
    }

    #[test]
    fn line_ends_may_be_cr_lf_or_both_even_split_across_chunks() {
        let got = data(&[b"data: a\r", b"\ndata: b\r", b"\r", b"data: c\rdata: d\n\n"]);
        assert_eq!(got, ["a\nb", "c\nd"]);
    }

    #[test]
    fn multi_line_data_is_joined_with_line_feeds() {
        assert_eq!(data(&[b"data: {\ndata: \"a\": 1}\n\n"]), ["{\n\"a\": 1}"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_later_events_still_arrive() {
        let got = data(&[
            b"data: a\xff\xfeb\n\n",
            b"data: \xe2\x82",
            b"\xac\n\ndata: next\n\n",
        ]);
        assert_eq!(got, ["a\u{fffd}\u{fffd}b", "\u{20ac}", "next"]);
    }

    #[test]
    fn an_event_over_the_cap_is_refused_without_buffering_it() {
        // One endless line.
        let long = vec![b'x'; 64];
        let got = read(&[b"data: ", &long, &long], 100);
        assert_eq!(got, [Err(StreamError::Malformed)]);
        // Many short lines of one event.
        let lines = b"data: 0123456789\n".repeat(10);
        let got = read(&[b"data: ok\n\n", &lines, b"\n"], 100);
        assert_eq!(got, [Ok("ok".to_string()), Err(StreamError::Malformed)]);
        // Events under the cap may add up to far more.
        let event = b"data: 0123456789\n\n".repeat(100);
        assert_eq!(read(&[&event], 20).len(), 100);
    }

    #[test]
    fn a_chunk_of_many_lines_is_read_in_linear_time() {
        let mut body = b"\n".repeat(1 << 20);
        body.extend_from_slice(b"data: x\n\n");
        let started = std::time::Instant::now();
        assert_eq!(data(&[&body]), ["x"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn a_broken_body_ends_the_events() {
        let body = stream::iter([Ok(Bytes::from_static(b"data: a\n\ndata: b")), Err(())]);
        let got: Vec<_> = futures::executor::block_on(events(body, 100).collect());
        assert_eq!(got, [Ok("a".to_string()), Err(StreamError::Broken)]);
    }
}
