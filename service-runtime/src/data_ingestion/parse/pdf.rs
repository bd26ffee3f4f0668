//! PDF: the text of every page, through `pdf-extract` (on `lopdf`). Both were written for
//! documents, not for hostile input, so the file is checked first for what would make
//! them run away — unbalanced nesting, streams that inflate past a bound, cycles in the
//! page tree or in forms drawing forms — and their output is bounded as it is written.
//! Panics are caught by the caller ([`super::run`]).

use std::collections::HashSet;
use std::io::{Read, Write};

use pdf_extract::{Dictionary, Document, Object, ObjectId};

use super::{Budget, ParseError};

pub const MAX_PAGES: usize = 2_000;
/// Objects declared with `obj` in the file.
pub const MAX_OBJECTS: usize = 200_000;
/// Nesting of arrays and dictionaries.
pub const MAX_NESTING: usize = 64;
/// Bytes one stream may inflate to, and all of them together.
pub const MAX_STREAM_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_INFLATED_BYTES: u64 = 256 * 1024 * 1024;
/// Forms drawn inside forms, and forms drawn in all.
const MAX_FORM_DEPTH: usize = 12;
const MAX_FORM_DRAWS: usize = 4_096;
/// Links followed up the page tree.
const MAX_TREE_HOPS: usize = 64;

fn invalid(what: impl std::fmt::Display) -> ParseError {
    ParseError::Invalid(format!("the PDF could not be read: {what}"))
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// The checks that need no parser: the file is whole, its nesting and its object count
/// are bounded, and its streams inflate within bounds (counted, not kept).
pub fn preflight(bytes: &[u8]) -> Result<(), ParseError> {
    let tail = &bytes[bytes.len().saturating_sub(2048)..];
    if find(tail, b"%%EOF", 0).is_none() {
        return Err(invalid("it is truncated (no %%EOF marker at its end)"));
    }
    let (mut depth, mut objects, mut inflated) = (0usize, 0usize, 0u64);
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // A comment runs to the end of the line.
                while i < bytes.len() && !matches!(bytes[i], b'\r' | b'\n') {
                    i += 1;
                }
            }
            b'(' => i = skip_string(bytes, i),
            b'[' => depth += 1,
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b']' => depth = depth.saturating_sub(1),
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'o' if bytes[i..].starts_with(b"obj") && !bytes[..i].ends_with(b"end") => {
                objects += 1;
                if objects > MAX_OBJECTS {
                    return Err(invalid(format!(
                        "it declares more than the limit of {MAX_OBJECTS} objects"
                    )));
                }
            }
            b's' if bytes[i..].starts_with(b"stream") && !bytes[..i].ends_with(b"end") => {
                let mut start = i + b"stream".len();
                if bytes.get(start) == Some(&b'\r') {
                    start += 1;
                }
                if bytes.get(start) == Some(&b'\n') {
                    start += 1;
                }
                let end = find(bytes, b"endstream", start).unwrap_or(bytes.len());
                let size = inflated_size(&bytes[start..end])?;
                inflated = inflated.saturating_add(size);
                if inflated > MAX_INFLATED_BYTES {
                    return Err(invalid(format!(
                        "its streams inflate to more than the limit of {MAX_INFLATED_BYTES} bytes"
                    )));
                }
                i = end + b"endstream".len();
                continue;
            }
            _ => {}
        }
        if depth > MAX_NESTING {
            return Err(invalid(format!(
                "it nests arrays and dictionaries deeper than the limit of {MAX_NESTING} levels"
            )));
        }
        i += 1;
    }
    Ok(())
}

/// Past a literal string `( … )`, whose parentheses nest and may be escaped.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let (mut i, mut open) = (start + 1, 1usize);
    while i < bytes.len() && open > 0 {
        match bytes[i] {
            b'\\' => i += 1,
            b'(' => open += 1,
            b')' => open -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// What a stream inflates to when it is zlib data (0 when it is not), refusing one past
/// [`MAX_STREAM_BYTES`] without holding the output.
fn inflated_size(data: &[u8]) -> Result<u64, ParseError> {
    if data.len() < 2
        || (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 != 0
        || data[0] & 0x0f != 8
    {
        return Ok(0);
    }
    let decoder = flate2::read::ZlibDecoder::new(data);
    let mut limited = decoder.take(MAX_STREAM_BYTES + 1);
    let n = std::io::copy(&mut limited, &mut std::io::sink()).unwrap_or(0);
    if n > MAX_STREAM_BYTES {
        return Err(invalid(format!(
            "a stream inflates to more than the limit of {MAX_STREAM_BYTES} bytes"
        )));
    }
    Ok(n)
}

/// A dictionary's value for `key`, looked up the `Parent` chain as pages inherit it.
fn inherited<'a>(
    doc: &'a Document,
    dict: &'a Dictionary,
    key: &[u8],
) -> Result<Option<&'a Object>, ParseError> {
    let mut seen = HashSet::new();
    let mut here = dict;
    for _ in 0..MAX_TREE_HOPS {
        if let Ok(v) = here.get(key) {
            return Ok(Some(doc.dereference(v).map(|(_, o)| o).unwrap_or(v)));
        }
        let Ok(parent) = here.get(b"Parent").and_then(Object::as_reference) else {
            return Ok(None);
        };
        if !seen.insert(parent) {
            return Err(invalid("its page tree has a cycle"));
        }
        here = doc.get_dictionary(parent).map_err(invalid)?;
    }
    Err(invalid(format!(
        "its page tree is deeper than {MAX_TREE_HOPS} levels"
    )))
}

fn content_of(stream: &pdf_extract::Stream) -> Vec<u8> {
    stream
        .decompressed_content()
        .unwrap_or_else(|_| stream.content.clone())
}

/// Names drawn with `Do` in a content stream.
fn drawn(content: &[u8]) -> Vec<Vec<u8>> {
    let Ok(ops) = pdf_extract::content::Content::decode(content) else {
        return Vec::new();
    };
    ops.operations
        .into_iter()
        .filter(|op| op.operator == "Do")
        .filter_map(|op| {
            op.operands
                .first()
                .and_then(|o| o.as_name().ok())
                .map(<[u8]>::to_vec)
        })
        .collect()
}

/// Names still to draw, the resources they are looked up in, and the depth of forms.
type Drawing<'a> = (Vec<Vec<u8>>, Option<&'a Dictionary>, usize);

/// Walks the forms every page draws, as the extractor will, refusing cycles, deep
/// nesting and fan-out past [`MAX_FORM_DRAWS`] (it would walk them unbounded).
fn check_forms(doc: &Document, budget: &Budget) -> Result<(), ParseError> {
    let mut draws = 0usize;
    for (_, page_id) in doc.get_pages() {
        budget.tick()?;
        let page = doc.get_dictionary(page_id).map_err(invalid)?;
        doc.get_page_resources(page_id).map_err(invalid)?;
        if inherited(doc, page, b"MediaBox")?.is_none() {
            return Err(invalid("a page has no MediaBox"));
        }
        let resources = inherited(doc, page, b"Resources")?.and_then(|r| r.as_dict().ok());
        let content = doc.get_page_content(page_id).map_err(invalid)?;
        // `path` holds the forms being drawn.
        let mut stack: Vec<Drawing<'_>> = vec![(drawn(&content), resources, 0)];
        let mut path: Vec<ObjectId> = Vec::new();
        while let Some((mut names, res, depth)) = stack.pop() {
            path.truncate(depth);
            let Some(name) = names.pop() else { continue };
            stack.push((names, res, depth));
            let Some(xobjects) = res
                .and_then(|r| r.get(b"XObject").ok())
                .and_then(|x| doc.dereference(x).ok())
                .and_then(|(_, x)| x.as_dict().ok())
            else {
                continue;
            };
            let Ok(Object::Reference(id)) = xobjects.get(&name) else {
                continue;
            };
            let Ok(Object::Stream(form)) = doc.get_object(*id) else {
                continue;
            };
            if form.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form".as_slice())
            {
                continue;
            }
            draws += 1;
            if draws > MAX_FORM_DRAWS {
                return Err(invalid(format!(
                    "it draws more than {MAX_FORM_DRAWS} forms"
                )));
            }
            if path.contains(id) {
                return Err(invalid("a form draws itself"));
            }
            if depth + 1 > MAX_FORM_DEPTH {
                return Err(invalid(format!(
                    "forms are nested deeper than {MAX_FORM_DEPTH} levels"
                )));
            }
            path.push(*id);
            let own = form
                .dict
                .get(b"Resources")
                .ok()
                .and_then(|r| doc.dereference(r).ok())
                .and_then(|(_, r)| r.as_dict().ok());
            stack.push((drawn(&content_of(form)), own.or(res), depth + 1));
        }
    }
    Ok(())
}

/// The extractor's output, bounded: a write past the limit or the deadline fails it.
struct Sink<'a> {
    text: Vec<u8>,
    max: usize,
    budget: &'a Budget,
    stopped: Option<ParseError>,
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > self.max {
            self.stopped = Some(ParseError::TooMuchText(self.max));
        } else if let Err(e) = self.budget.tick() {
            self.stopped = Some(e);
        }
        if self.stopped.is_some() {
            return Err(std::io::Error::other("stopped"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    let doc = Document::load_mem(bytes).map_err(invalid)?;
    budget.tick()?;
    if doc.is_encrypted() {
        return Err(invalid("it is encrypted"));
    }
    let pages = doc.get_pages().len();
    if pages == 0 {
        return Err(invalid("it has no pages"));
    }
    if pages > MAX_PAGES {
        return Err(invalid(format!(
            "it has {pages} pages, more than the limit of {MAX_PAGES}"
        )));
    }
    check_forms(&doc, budget)?;
    let max = budget_room(budget);
    let mut sink = Sink {
        text: Vec::new(),
        max,
        budget,
        stopped: None,
    };
    let result = {
        let mut output = pdf_extract::PlainTextOutput::new(&mut sink as &mut dyn Write);
        pdf_extract::output_doc(&doc, &mut output)
    };
    if let Some(stopped) = sink.stopped.take() {
        return Err(stopped);
    }
    result.map_err(invalid)?;
    let text = String::from_utf8_lossy(&sink.text).into_owned();
    super::text::push_lines(&text, budget)
}

/// Bytes the extractor may write: the text budget, with room for the spacing it adds.
fn budget_room(budget: &Budget) -> usize {
    budget.max.saturating_mul(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_ingestion::parse::{Kind, parse as parse_file, test_budget};

    #[test]
    fn truncated_files_and_deep_nesting_are_refused_before_parsing() {
        let err = preflight(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let deep = format!("%PDF-1.4\n{}\n%%EOF\n", "[".repeat(10_000));
        let err = preflight(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("64 levels"), "{err}");
        // Brackets in strings and comments are not nesting.
        let ok = format!(
            "%PDF-1.4\n({})\n% {}\n%%EOF\n",
            "[".repeat(500),
            "[".repeat(500)
        );
        preflight(ok.as_bytes()).unwrap();
    }

    #[test]
    fn a_stream_that_inflates_past_the_bound_is_refused() {
        use flate2::write::ZlibEncoder;
        let mut enc = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..(MAX_STREAM_BYTES / (1024 * 1024) + 1) {
            enc.write_all(&zeros).unwrap();
        }
        let packed = enc.finish().unwrap();
        let mut pdf = b"%PDF-1.4\n1 0 obj << /Filter /FlateDecode >> stream\n".to_vec();
        pdf.extend_from_slice(&packed);
        pdf.extend_from_slice(b"\nendstream endobj\n%%EOF\n");
        let err = parse_file(Kind::Pdf, &pdf, test_budget()).unwrap_err();
        assert!(err.to_string().contains("inflates"), "{err}");
    }

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingest/");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    #[test]
    fn the_text_of_every_page() {
        let text = parse_file(Kind::Pdf, &fixture("sample.pdf"), test_budget()).unwrap();
        for part in [
            "Ingestion guide",
            "Parsing",
            "Indexing",
            "stored in the collection",
        ] {
            assert!(text.contains(part), "{part} not in {text:?}");
        }
        let err = parse_file(Kind::Pdf, &fixture("truncated.pdf"), test_budget()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let err = parse_file(Kind::Pdf, &fixture("corrupt.pdf"), test_budget()).unwrap_err();
        assert!(matches!(err, ParseError::Invalid(_)), "{err}");
    }

    #[test]
    fn garbage_after_the_header_is_a_refusal() {
        let err =
            parse_file(Kind::Pdf, b"%PDF-1.7\nnothing here\n%%EOF\n", test_budget()).unwrap_err();
        assert!(
            matches!(err, ParseError::Invalid(ref m) if m.starts_with("the PDF")),
            "{err}"
        );
    }
}
