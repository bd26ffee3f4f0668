//! Files to text: the type told from the bytes first (magic numbers), then from the
//! declared media type or the file name, then UTF-8 text; one parser per format, each a
//! pure function over the bytes under the same [`Budget`] (text written, time spent).
//!
//! [`run`] runs a parser on a thread of its own (a large stack, a time limit, panics
//! caught), so no file makes the process hang, crash or answer a 500.

mod csv;
mod docx;
mod html;
mod json;
mod markdown;
mod pdf;
mod text;

use std::time::{Duration, Instant};

pub use docx::DOCX_MEDIA_TYPE;

/// The formats understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Csv,
    Json,
    Pdf,
    Docx,
}

impl Kind {
    /// The media type a job records.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Text => "text/plain",
            Kind::Markdown => "text/markdown",
            Kind::Html => "text/html",
            Kind::Csv => "text/csv",
            Kind::Json => "application/json",
            Kind::Pdf => "application/pdf",
            Kind::Docx => DOCX_MEDIA_TYPE,
        }
    }

    pub fn from_media_type(media: &str) -> Option<Kind> {
        Some(match media {
            "text/plain" => Kind::Text,
            "text/markdown" | "text/x-markdown" => Kind::Markdown,
            "text/html" | "application/xhtml+xml" => Kind::Html,
            "text/csv" | "application/csv" => Kind::Csv,
            "application/json" => Kind::Json,
            "application/pdf" => Kind::Pdf,
            DOCX_MEDIA_TYPE => Kind::Docx,
            _ => return None,
        })
    }

    fn from_extension(filename: &str) -> Option<Kind> {
        let (_, ext) = filename.rsplit_once('.')?;
        Some(match ext.to_ascii_lowercase().as_str() {
            "txt" | "text" | "log" => Kind::Text,
            "md" | "markdown" => Kind::Markdown,
            "html" | "htm" | "xhtml" => Kind::Html,
            "csv" => Kind::Csv,
            "json" => Kind::Json,
            "pdf" => Kind::Pdf,
            "docx" => Kind::Docx,
            _ => return None,
        })
    }
}

/// Media types that say nothing about the content.
fn is_generic(media: &str) -> bool {
    matches!(
        media,
        "" | "application/octet-stream" | "binary/octet-stream" | "application/unknown"
    )
}

/// Why a file gives no text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A type this service does not read (HTTP 415).
    #[error(
        "the file type {0} is not supported; supported are plain text, Markdown, HTML, CSV, JSON, PDF and DOCX"
    )]
    Unsupported(String),
    /// The file is not what it claims to be, or breaks a limit (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    #[error("the text of the file is more than the limit of {0} bytes")]
    TooMuchText(usize),
    #[error("parsing did not finish within the limit of {0} s")]
    Timeout(f64),
}

impl ParseError {
    fn invalid(what: impl std::fmt::Display) -> Self {
        ParseError::Invalid(what.to_string())
    }
}

/// What one parse may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of text the parse may produce.
    pub max_text_bytes: usize,
    /// Time the parse may take.
    pub timeout: Duration,
}

/// The limits of a parse in progress: parsers write through [`Budget::push`], which
/// refuses text past the limit and work past the deadline.
#[derive(Debug)]
pub struct Budget {
    out: String,
    max: usize,
    deadline: Instant,
    timeout: Duration,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Self {
            out: String::new(),
            max: limits.max_text_bytes,
            deadline: Instant::now() + limits.timeout,
            timeout: limits.timeout,
        }
    }

    /// Fails once the time is up; loops call it as they go.
    pub fn tick(&self) -> Result<(), ParseError> {
        if Instant::now() > self.deadline {
            return Err(ParseError::Timeout(self.timeout.as_secs_f64()));
        }
        Ok(())
    }

    /// Appends text without the control characters Postgres and chunkers choke on
    /// (NUL among them); line breaks and tabs are kept.
    pub fn push(&mut self, s: &str) -> Result<(), ParseError> {
        if self.out.len() + s.len() > self.max {
            let clean: usize = s.chars().filter(|c| keep(*c)).map(char::len_utf8).sum();
            if self.out.len() + clean > self.max {
                return Err(ParseError::TooMuchText(self.max));
            }
        }
        if s.chars().all(keep) {
            self.out.push_str(s);
        } else {
            self.out.extend(s.chars().filter(|c| keep(*c)));
        }
        Ok(())
    }

    pub fn push_char(&mut self, c: char) -> Result<(), ParseError> {
        let mut buf = [0u8; 4];
        self.push(c.encode_utf8(&mut buf))
    }

    /// Ends the current line unless the text is empty or already ends one.
    pub fn newline(&mut self) -> Result<(), ParseError> {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.push("\n")?;
        }
        Ok(())
    }

    /// Ends the current paragraph: the text then ends with one blank line.
    pub fn paragraph(&mut self) -> Result<(), ParseError> {
        self.newline()?;
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.push("\n")?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn ends_with(&self, s: &str) -> bool {
        self.out.ends_with(s)
    }

    fn finish(self) -> String {
        let trimmed = self.out.trim();
        if trimmed.len() == self.out.len() {
            self.out
        } else {
            trimmed.to_string()
        }
    }
}

fn keep(c: char) -> bool {
    !c.is_control() || matches!(c, '\n' | '\t')
}

/// The format of a file: its magic bytes first, then the declared media type (without
/// parameters) or the name's extension, then whether it is UTF-8 text.
pub fn sniff(
    bytes: &[u8],
    declared: Option<&str>,
    filename: Option<&str>,
) -> Result<Kind, ParseError> {
    if bytes.starts_with(b"%PDF-") {
        return Ok(Kind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return if docx::is_docx(bytes) {
            Ok(Kind::Docx)
        } else {
            Err(ParseError::Unsupported(
                "application/zip (a ZIP archive that is not a Word document)".into(),
            ))
        };
    }
    if let Some(binary) = binary_magic(bytes) {
        return Err(ParseError::Unsupported(binary.into()));
    }
    let media = declared
        .and_then(|d| d.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let claimed = Kind::from_media_type(&media).or_else(|| filename.and_then(Kind::from_extension));
    match claimed {
        Some(Kind::Pdf) => Err(ParseError::invalid(
            "the file is declared a PDF but does not start with %PDF-",
        )),
        Some(Kind::Docx) => Err(ParseError::invalid(
            "the file is declared a Word document but is not a ZIP archive",
        )),
        Some(kind) => Ok(kind),
        None if is_generic(&media) || media.starts_with("text/") => {
            if text::decode(bytes).is_ok() {
                Ok(Kind::Text)
            } else {
                Err(ParseError::Unsupported(if media.is_empty() {
                    "application/octet-stream".into()
                } else {
                    media
                }))
            }
        }
        None => Err(ParseError::Unsupported(media)),
    }
}

/// Binary formats recognised only to be named in the refusal.
fn binary_magic(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"\x1f\x8b", "application/gzip"),
        (
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
            "application/x-ole-storage (a legacy Office file)",
        ),
        (b"\x7fELF", "application/x-executable"),
        (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
        (b"Rar!", "application/vnd.rar"),
    ];
    MAGIC
        .iter()
        .find(|(m, _)| bytes.starts_with(m))
        .map(|(_, t)| *t)
}

/// Checks what can be checked at once, before a job is queued: the text formats decode,
/// a PDF is whole and its streams inflate within bounds, a DOCX archive is within its
/// bounds. The full parse may still find a deeper fault.
pub fn preflight(kind: Kind, bytes: &[u8]) -> Result<(), ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::invalid("the file is empty"));
    }
    match kind {
        Kind::Text | Kind::Markdown | Kind::Html | Kind::Csv => text::decode(bytes).map(drop),
        Kind::Json => json::check(bytes),
        Kind::Pdf => pdf::preflight(bytes),
        Kind::Docx => docx::preflight(bytes),
    }
}

/// Parses `bytes` as `kind` within `budget`; the text, trimmed.
pub fn parse(kind: Kind, bytes: &[u8], mut budget: Budget) -> Result<String, ParseError> {
    preflight(kind, bytes)?;
    match kind {
        Kind::Text => text::parse(bytes, &mut budget)?,
        Kind::Markdown => markdown::parse(bytes, &mut budget)?,
        Kind::Html => html::parse(bytes, &mut budget)?,
        Kind::Csv => csv::parse(bytes, &mut budget)?,
        Kind::Json => json::parse(bytes, &mut budget)?,
        Kind::Pdf => pdf::parse(bytes, &mut budget)?,
        Kind::Docx => docx::parse(bytes, &mut budget)?,
    }
    let text = budget.finish();
    if text.is_empty() {
        return Err(ParseError::invalid("the file holds no text"));
    }
    Ok(text)
}

/// Stack of a parse thread: parsers of nested formats recurse, and an overflow would end
/// the process rather than the parse.
const PARSE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `work` on a thread of its own under `timeout`, with panics turned into a refusal.
/// A parse that overruns its time is answered at the deadline; the thread stops at its
/// next [`Budget::tick`], and `permit` (a place among the concurrent parses) is held until
/// it has.
pub async fn run<T: Send + 'static>(
    timeout: Duration,
    permit: tokio::sync::OwnedSemaphorePermit,
    work: impl FnOnce() -> Result<T, ParseError> + Send + 'static,
) -> Result<T, ParseError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("ingest-parse".into())
        .stack_size(PARSE_STACK_BYTES)
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| {
                    Err(ParseError::invalid(
                        "the file could not be parsed: the parser gave up on its structure",
                    ))
                });
            drop(permit);
            let _ = tx.send(outcome);
        });
    if spawned.is_err() {
        return Err(ParseError::Timeout(0.0));
    }
    match tokio::time::timeout(timeout + Duration::from_millis(500), rx).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(ParseError::invalid("the file could not be parsed")),
        Err(_) => Err(ParseError::Timeout(timeout.as_secs_f64())),
    }
}

#[cfg(test)]
pub(crate) fn test_budget() -> Budget {
    Budget::new(Limits {
        max_text_bytes: 1024 * 1024,
        timeout: Duration::from_secs(10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_win_over_what_is_declared() {
        assert_eq!(
            sniff(b"%PDF-1.4 ...", Some("text/plain"), Some("a.txt")),
            Ok(Kind::Pdf)
        );
        let err = sniff(b"PK\x03\x04rest", None, Some("a.docx")).unwrap_err();
        assert!(
            matches!(err, ParseError::Unsupported(ref t) if t.contains("application/zip")),
            "{err}"
        );
        let err = sniff(b"\x89PNG\r\n\x1a\nxx", Some("text/plain"), None).unwrap_err();
        assert_eq!(err, ParseError::Unsupported("image/png".into()));
    }

    #[test]
    fn then_the_declared_type_or_the_extension_then_utf8() {
        assert_eq!(
            sniff(b"# T", Some("text/markdown; charset=utf-8"), None),
            Ok(Kind::Markdown)
        );
        assert_eq!(
            sniff(b"a,b", Some("application/octet-stream"), Some("x.CSV")),
            Ok(Kind::Csv)
        );
        assert_eq!(sniff(b"{}", None, Some("x.json")), Ok(Kind::Json));
        assert_eq!(sniff(b"plain words", None, None), Ok(Kind::Text));
        assert_eq!(
            sniff(b"plain words", Some("text/x-unknown"), None),
            Ok(Kind::Text)
        );
        let err = sniff(b"\xff\xfe\x00\xd8garbage\xc3", None, None);
        assert!(matches!(err, Err(ParseError::Unsupported(_))), "{err:?}");
        let err = sniff(b"words", Some("image/svg+xml"), Some("x.svg")).unwrap_err();
        assert_eq!(err, ParseError::Unsupported("image/svg+xml".into()));
        assert!(err.to_string().contains("image/svg+xml"));
        let err = sniff(b"not a pdf", Some("application/pdf"), None).unwrap_err();
        assert!(matches!(err, ParseError::Invalid(_)), "{err}");
    }

    #[test]
    fn the_budget_bounds_text_and_drops_control_characters() {
        let mut b = Budget::new(Limits {
            max_text_bytes: 8,
            timeout: Duration::from_secs(5),
        });
        b.push("a\0b\u{7}c\n").unwrap();
        assert_eq!(b.out, "abc\n");
        assert_eq!(b.push("12345"), Err(ParseError::TooMuchText(8)));
        let b = Budget::new(Limits {
            max_text_bytes: 8,
            timeout: Duration::ZERO,
        });
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(b.tick(), Err(ParseError::Timeout(_))));
    }

    #[test]
    fn an_empty_or_textless_file_is_refused() {
        assert!(matches!(
            preflight(Kind::Text, b""),
            Err(ParseError::Invalid(_))
        ));
        let err = parse(Kind::Text, b"  \n\t ", test_budget()).unwrap_err();
        assert!(err.to_string().contains("no text"), "{err}");
    }

    #[tokio::test]
    async fn a_panicking_or_slow_parser_is_a_refusal() {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let permit = sem.clone().acquire_owned().await.unwrap();
        let err = run(
            Duration::from_secs(5),
            permit,
            || -> Result<(), ParseError> { panic!("hostile input") },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ParseError::Invalid(_)), "{err}");
        let permit = sem.clone().acquire_owned().await.unwrap();
        let err = run(Duration::from_millis(10), permit, || {
            std::thread::sleep(Duration::from_millis(800));
            Ok(())
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ParseError::Timeout(_)), "{err}");
        // The permit is held until the overrunning thread is done.
        assert_eq!(sem.available_permits(), 0);
    }
}
