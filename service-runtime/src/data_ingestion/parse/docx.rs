//! Word documents (DOCX): the text of `word/document.xml`, paragraph by paragraph, with
//! heading styles as Markdown `#` lines. The archive is bounded before anything is
//! inflated (entries, declared sizes) and while it is (the bytes actually read), so a
//! ZIP bomb is refused rather than expanded.

use std::io::{Cursor, Read};

use quick_xml::events::{BytesStart, Event};

use super::{Budget, ParseError};

pub const DOCX_MEDIA_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";
const DOCUMENT: &str = "word/document.xml";
/// Entries of the archive; real documents have a few dozen.
pub const MAX_ENTRIES: usize = 1000;
/// Bytes all entries may declare together, inflated.
pub const MAX_DECLARED_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes of `word/document.xml`, inflated.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

fn invalid(what: impl std::fmt::Display) -> ParseError {
    ParseError::Invalid(format!("the Word document could not be read: {what}"))
}

/// Whether a ZIP archive names the main part of a Word document (for sniffing only).
pub fn is_docx(bytes: &[u8]) -> bool {
    bytes
        .windows(DOCUMENT.len())
        .any(|w| w == DOCUMENT.as_bytes())
}

/// The number of entries the end-of-central-directory record declares, read before the
/// archive is opened (opening it allocates per entry).
fn declared_entries(bytes: &[u8]) -> Result<usize, ParseError> {
    const EOCD: &[u8] = b"PK\x05\x06";
    let from = bytes.len().saturating_sub(22 + 65_535);
    let at = bytes[from..]
        .windows(4)
        .rposition(|w| w == EOCD)
        .map(|i| from + i)
        .ok_or_else(|| invalid("the ZIP archive has no central directory (is it truncated?)"))?;
    let record = bytes
        .get(at..at + 22)
        .ok_or_else(|| invalid("the ZIP archive's central directory is truncated"))?;
    let entries = usize::from(u16::from_le_bytes([record[10], record[11]]));
    if entries == 0xFFFF {
        return Err(invalid("ZIP64 archives are not read"));
    }
    Ok(entries)
}

/// Checks the archive's bounds and that it holds a document, inflating nothing.
pub fn preflight(bytes: &[u8]) -> Result<(), ParseError> {
    open(bytes).map(drop)
}

fn open(bytes: &[u8]) -> Result<zip::ZipArchive<Cursor<&[u8]>>, ParseError> {
    let entries = declared_entries(bytes)?;
    if entries > MAX_ENTRIES {
        return Err(invalid(format!(
            "the archive has {entries} entries, more than the limit of {MAX_ENTRIES}"
        )));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(invalid)?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "the archive has more than the limit of {MAX_ENTRIES} entries"
        )));
    }
    let mut declared = 0u64;
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(invalid)?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > MAX_DECLARED_BYTES {
        return Err(invalid(format!(
            "its entries inflate to {declared} bytes, more than the limit of {MAX_DECLARED_BYTES}"
        )));
    }
    let main = archive
        .by_name(DOCUMENT)
        .map_err(|_| invalid(format!("the archive has no {DOCUMENT}")))?;
    if main.size() > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "{DOCUMENT} inflates to {} bytes, more than the limit of {MAX_DOCUMENT_BYTES}",
            main.size()
        )));
    }
    drop(main);
    Ok(archive)
}

/// The main part, inflated within [`MAX_DOCUMENT_BYTES`] whatever its entry declares.
fn document_xml(bytes: &[u8]) -> Result<String, ParseError> {
    let mut archive = open(bytes)?;
    let entry = archive
        .by_name(DOCUMENT)
        .map_err(|_| invalid(format!("the archive has no {DOCUMENT}")))?;
    let mut xml = Vec::new();
    entry
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut xml)
        .map_err(invalid)?;
    if xml.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(invalid(format!(
            "{DOCUMENT} inflates to more than the limit of {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    String::from_utf8(xml).map_err(|_| invalid(format!("{DOCUMENT} is not UTF-8")))
}

/// The heading level of a paragraph style (`Heading1`…`Heading6`, `Title`).
fn heading_level(style: &str) -> Option<usize> {
    if style.eq_ignore_ascii_case("title") {
        return Some(1);
    }
    let digits = style
        .strip_prefix("Heading")
        .or_else(|| style.strip_prefix("heading"))?;
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|l| (1..=6).contains(l))
}

fn attribute(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.value.into_owned())
}

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    let xml = document_xml(bytes)?;
    budget.tick()?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut paragraph = String::new();
    let mut heading: Option<usize> = None;
    let mut in_text = false;
    let mut n = 0usize;
    loop {
        n += 1;
        if n.is_multiple_of(4096) {
            budget.tick()?;
        }
        let event = reader.read_event().map_err(|e| {
            invalid(format!(
                "{DOCUMENT} at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == "t" => in_text = true,
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "p" => {
                    paragraph.clear();
                    heading = None;
                }
                "pStyle" => heading = attribute(&e, "val").as_deref().and_then(heading_level),
                "tab" => paragraph.push('\t'),
                "br" | "cr" => paragraph.push('\n'),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = false,
                "p" => {
                    let text = paragraph.trim();
                    if !text.is_empty() {
                        budget.paragraph()?;
                        if let Some(level) = heading {
                            budget.push(&"#".repeat(level))?;
                            budget.push(" ")?;
                        }
                        budget.push(text)?;
                    }
                    paragraph.clear();
                    heading = None;
                }
                _ => {}
            },
            Event::Text(t) if in_text => paragraph.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => paragraph.push_str(&t),
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    paragraph.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    paragraph.push_str(s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
        if paragraph.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(invalid("a paragraph is larger than the document limit"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::data_ingestion::parse::{Kind, parse as parse_file, sniff, test_budget};

    pub(crate) fn docx(document: &str) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("[Content_Types].xml", opts).unwrap();
        zip.write_all(b"<Types/>").unwrap();
        zip.start_file(DOCUMENT, opts).unwrap();
        zip.write_all(document.as_bytes()).unwrap();
        zip.finish().unwrap();
        out.into_inner()
    }

    #[test]
    fn paragraphs_and_headings() {
        let body = r#"<?xml version="1.0"?><w:document xmlns:w="w"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Intro</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Fish &amp; chips </w:t></w:r><w:r><w:tab/><w:t>&#233;t&#xE9;</w:t></w:r></w:p>
            <w:p><w:r><w:instrText>HIDDEN FIELD</w:instrText></w:r></w:p>
            </w:body></w:document>"#;
        let bytes = docx(body);
        assert_eq!(sniff(&bytes, None, None), Ok(Kind::Docx));
        assert_eq!(
            parse_file(Kind::Docx, &bytes, test_budget()).unwrap(),
            "# Intro\n\nFish & chips \t\u{e9}t\u{e9}"
        );
    }

    #[test]
    fn a_word_document_keeps_its_headings() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingest/");
        let bytes = std::fs::read(format!("{dir}sample.docx")).unwrap();
        assert_eq!(sniff(&bytes, None, None), Ok(Kind::Docx));
        let text = parse_file(Kind::Docx, &bytes, test_budget()).unwrap();
        assert!(
            text.starts_with("# Ingestion guide\n\nThis guide explains"),
            "{text:?}"
        );
        assert!(text.contains("\n\n# Indexing\n\n"), "{text:?}");
        let bomb = std::fs::read(format!("{dir}bomb.docx")).unwrap();
        let err = parse_file(Kind::Docx, &bomb, test_budget()).unwrap_err();
        assert!(err.to_string().contains("more than the limit"), "{err}");
    }

    #[test]
    fn broken_archives_and_bombs_are_refused_before_inflating() {
        let bytes = docx("<w:document/>");
        let truncated = &bytes[..bytes.len() - 30];
        let err = parse_file(Kind::Docx, truncated, test_budget()).unwrap_err();
        assert!(matches!(err, ParseError::Invalid(_)), "{err}");
        // A document.xml of 100 MiB of zeros compresses to some 100 KiB.
        let huge = format!("<w:document>{}</w:document>", " ".repeat(100 * 1024 * 1024));
        let bomb = docx(&huge);
        assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
        let err = preflight(&bomb).unwrap_err();
        assert!(err.to_string().contains("more than the limit"), "{err}");
    }
}
