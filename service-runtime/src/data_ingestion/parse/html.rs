//! HTML: the text a reader sees. Scripts, styles, `<noscript>`, `<template>` and the
//! document head are left out; headings become Markdown `#` lines and list items `- `
//! lines, so the chunker still sees the structure; block elements end paragraphs.

use ego_tree::iter::Edge;
use scraper::{Html, Node};

use super::{Budget, ParseError, text};

/// Elements whose content is never shown as text.
const HIDDEN: &[&str] = &[
    "script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas",
];

/// Elements that start and end a block of text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "table",
    "tr",
    "blockquote",
    "pre",
    "hr",
    "form",
    "fieldset",
    "figure",
    "figcaption",
    "address",
    "details",
    "summary",
    "body",
    "caption",
];

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some(usize::from(d - b'0')),
        _ => None,
    }
}

/// Nesting of elements read. The HTML parser's work grows with the square of the depth
/// of open elements, and it cannot be interrupted, so deeper documents are refused before
/// it runs (browsers stop nesting at about this depth too).
pub const MAX_DEPTH: usize = 512;

/// Elements without content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements a later tag may close implicitly: not counted as nesting, since documents
/// routinely leave them open.
const IMPLIED_END: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot",
    "colgroup", "caption", "rb", "rt", "rp", "rtc",
];

/// The deepest nesting of elements in `source`, estimated from its tags without parsing.
fn depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'<') {
        i += at + 1;
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric())
            .map_or(bytes.len(), |n| start + n);
        if end == start {
            continue;
        }
        let name = source[start..end].to_ascii_lowercase();
        if VOID.contains(&name.as_str()) || IMPLIED_END.contains(&name.as_str()) {
            continue;
        }
        let tag_end = bytes[end..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(bytes.len(), |n| end + n);
        if closing {
            depth = depth.saturating_sub(1);
        } else if !(tag_end > 0 && bytes.get(tag_end - 1) == Some(&b'/')) {
            depth += 1;
            deepest = deepest.max(depth);
        }
        i = tag_end.min(bytes.len());
    }
    deepest
}

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    let source = text::decode(bytes)?;
    if depth(&source) > MAX_DEPTH {
        return Err(ParseError::Invalid(format!(
            "the HTML nests elements deeper than the limit of {MAX_DEPTH} levels"
        )));
    }
    let doc = Html::parse_document(&source);
    budget.tick()?;
    // Depth inside hidden elements, and inside <pre> (whose spacing is kept).
    let (mut hidden, mut pre) = (0usize, 0usize);
    for (n, edge) in doc.tree.root().traverse().enumerate() {
        if n.is_multiple_of(4096) {
            budget.tick()?;
        }
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(e) => {
                    let name = e.name();
                    if HIDDEN.contains(&name) {
                        hidden += 1;
                    }
                    if hidden > 0 {
                        continue;
                    }
                    if let Some(level) = heading_level(name) {
                        budget.paragraph()?;
                        budget.push(&"#".repeat(level))?;
                        budget.push(" ")?;
                    } else if name == "li" {
                        budget.newline()?;
                        budget.push("- ")?;
                    } else if name == "br" {
                        budget.newline()?;
                    } else if matches!(name, "td" | "th") {
                        if !budget.ends_with("\n") && !budget.is_empty() {
                            budget.push(" | ")?;
                        }
                    } else if BLOCKS.contains(&name) {
                        budget.paragraph()?;
                    }
                    if name == "pre" {
                        pre += 1;
                    }
                }
                Node::Text(t) if hidden == 0 => {
                    if pre > 0 {
                        budget.push(t)?;
                    } else {
                        push_collapsed(t, budget)?;
                    }
                }
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(e) = node.value() {
                    let name = e.name();
                    if HIDDEN.contains(&name) {
                        hidden = hidden.saturating_sub(1);
                        continue;
                    }
                    if hidden > 0 {
                        continue;
                    }
                    if name == "pre" {
                        pre = pre.saturating_sub(1);
                    }
                    if heading_level(name).is_some() || BLOCKS.contains(&name) {
                        budget.paragraph()?;
                    } else if name == "li" {
                        budget.newline()?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs of white space become one space, and none starts a line.
fn push_collapsed(t: &str, budget: &mut Budget) -> Result<(), ParseError> {
    let mut first = true;
    let starts_with_space = t.starts_with(char::is_whitespace);
    for word in t.split_whitespace() {
        let at_line_start = budget.is_empty() || budget.ends_with("\n") || budget.ends_with(" ");
        if (!first || starts_with_space) && !at_line_start {
            budget.push(" ")?;
        }
        budget.push(word)?;
        first = false;
    }
    if t.ends_with(char::is_whitespace) && !first {
        budget.push(" ")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::data_ingestion::parse::{Kind, parse, test_budget};

    #[test]
    fn visible_text_only_with_headings_as_markdown() {
        let html = br#"<!doctype html><html><head><title>Hidden title</title>
            <style>body { color: red }</style><script>alert("no")</script></head>
            <body><h1>Main   heading</h1><p>First <b>bold</b> paragraph.</p>
            <noscript>enable js</noscript><template><p>template text</p></template>
            <h2>Part two</h2><ul><li>one</li><li>two</li></ul>
            <script type="text/javascript">var hidden = 1;</script>
            <table><tr><th>k</th><td>v</td></tr></table></body></html>"#;
        let text = parse(Kind::Html, html, test_budget()).unwrap();
        assert_eq!(
            text,
            "# Main heading\n\nFirst bold paragraph.\n\n## Part two\n\n- one\n- two\n\nk | v"
        );
        for hidden in [
            "alert",
            "color",
            "enable js",
            "template text",
            "Hidden title",
            "var hidden",
        ] {
            assert!(!text.contains(hidden), "{hidden} in {text}");
        }
    }

    #[test]
    fn deep_markup_is_refused_before_parsing_and_broken_markup_is_read() {
        let deep = format!("{}deep text", "<div><span>".repeat(100_000));
        let started = std::time::Instant::now();
        let err = parse(Kind::Html, deep.as_bytes(), test_budget()).unwrap_err();
        assert!(err.to_string().contains("512 levels"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let open_ended = format!("{}<div>end</span>", "<p>para <li>item <br>".repeat(5_000));
        let text = parse(Kind::Html, open_ended.as_bytes(), test_budget()).unwrap();
        assert!(text.ends_with("end"), "{}", &text[text.len() - 40..]);
        assert_eq!(super::depth("<a><b/><br><c></c></a>"), 2);
    }
}
