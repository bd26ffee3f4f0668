//! Splitting a document into chunks the embedding model reads whole: by tokens, with
//! overlap, on paragraph and sentence boundaries. Markdown headings start a section; a
//! chunk never spans two sections and carries its section's heading path
//! (`Install > From source`).

/// One piece of a document, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub ord: usize,
    /// The headings above the chunk, outermost first, joined with ` > `.
    pub heading: Option<String>,
    pub text: String,
    pub tokens: usize,
}

impl Chunk {
    /// What the model embeds: the heading path, then the text.
    pub fn embedding_text(&self) -> String {
        match &self.heading {
            Some(h) => format!("{h}\n{}", self.text),
            None => self.text.clone(),
        }
    }
}

/// How a collection cuts its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Most tokens of one chunk.
    pub tokens: usize,
    /// Tokens of the end of a chunk repeated at the start of the next.
    pub overlap: usize,
}

/// A section: the heading path and the lines under it.
struct Section {
    heading: Option<String>,
    body: String,
}

/// Splits `text` into sections at Markdown ATX headings outside fenced code.
fn sections(text: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let mut fenced = false;
    let heading = |path: &[(usize, String)]| {
        (!path.is_empty()).then(|| {
            path.iter()
                .map(|(_, h)| h.as_str())
                .collect::<Vec<_>>()
                .join(" > ")
        })
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
        }
        if let Some((level, title)) = (!fenced).then(|| atx_heading(line)).flatten() {
            if !body.trim().is_empty() {
                out.push(Section {
                    heading: heading(&path),
                    body: std::mem::take(&mut body),
                });
            }
            body.clear();
            path.retain(|(l, _)| *l < level);
            path.push((level, title));
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    if !body.trim().is_empty() {
        out.push(Section {
            heading: heading(&path),
            body,
        });
    }
    out
}

/// `# Title` to `######` with a space after the marks; at most three leading spaces.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let title = after.trim().trim_end_matches('#').trim();
    let title: String = title
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    (!title.is_empty()).then_some((level, title))
}

/// Paragraphs: runs of lines between blank lines, whitespace collapsed inside lines.
fn paragraphs(body: &str) -> impl Iterator<Item = String> + '_ {
    body.split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(|p| {
            p.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|p| !p.is_empty())
}

/// Sentences: cut after `.`, `!` or `?` followed by white space.
fn sentences(paragraph: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = paragraph.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            let end = i + c.len_utf8();
            out.push(paragraph[start..end].trim());
            start = end;
        }
    }
    if start < paragraph.len() {
        out.push(paragraph[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Pieces of at most `max` tokens of a sentence that is longer: cut between words, and
/// inside a word longer than the limit.
fn pieces(sentence: &str, max: usize, count: &dyn Fn(&str) -> usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut tokens = 0;
    for word in sentence.split_whitespace() {
        let n = count(word).max(1);
        if n > max {
            // A "word" longer than a chunk (a hash, a URL): cut it by characters.
            let per = (word.chars().count() * max / n).max(1);
            let chars: Vec<char> = word.chars().collect();
            for part in chars.chunks(per) {
                let part: String = part.iter().collect();
                let pn = count(&part).max(1);
                if tokens > 0 {
                    out.push((std::mem::take(&mut current), tokens));
                    tokens = 0;
                }
                out.push((part, pn));
            }
            continue;
        }
        if tokens + n > max && tokens > 0 {
            out.push((std::mem::take(&mut current), tokens));
            tokens = 0;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        tokens += n;
    }
    if tokens > 0 {
        out.push((current, tokens));
    }
    out
}

/// The units a section is packed from, each at most `max` tokens: paragraphs that fit,
/// else their sentences, else pieces of sentences.
fn units(body: &str, max: usize, count: &dyn Fn(&str) -> usize) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for p in paragraphs(body) {
        let n = count(&p);
        if n <= max {
            out.push((p, n.max(1)));
            continue;
        }
        for s in sentences(&p) {
            let n = count(s);
            if n <= max {
                out.push((s.to_string(), n.max(1)));
            } else {
                out.extend(pieces(s, max, count));
            }
        }
    }
    out
}

/// The chunks of `text`. `count` gives the tokens of a text as the collection's model
/// counts them.
pub fn chunk(text: &str, sizes: Sizes, count: &dyn Fn(&str) -> usize) -> Vec<Chunk> {
    let max = sizes.tokens.max(1);
    let overlap = sizes.overlap.min(max / 2);
    let mut out: Vec<Chunk> = Vec::new();
    for section in sections(text) {
        let units = units(&section.body, max, count);
        let mut start = 0;
        while start < units.len() {
            // Pack units from `start` while they fit.
            let mut end = start;
            let mut tokens = 0;
            while end < units.len() && (end == start || tokens + units[end].1 <= max) {
                tokens += units[end].1;
                end += 1;
            }
            let text = units[start..end]
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            out.push(Chunk {
                ord: out.len(),
                heading: section.heading.clone(),
                text,
                tokens,
            });
            if end >= units.len() {
                break;
            }
            // The next chunk starts with the last units of this one that fit in the
            // overlap, and always moves forward.
            let mut back = end;
            let mut carried = 0;
            while back > start + 1 && carried + units[back - 1].1 <= overlap {
                carried += units[back - 1].1;
                back -= 1;
            }
            start = back;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    fn cut(text: &str, tokens: usize, overlap: usize) -> Vec<Chunk> {
        chunk(text, Sizes { tokens, overlap }, &words)
    }

    #[test]
    fn short_paragraphs_pack_into_one_chunk() {
        let c = cut("one two three.\n\nfour five.\n", 10, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "one two three.\n\nfour five.");
        assert_eq!(c[0].tokens, 5);
        assert_eq!(c[0].heading, None);
    }

    #[test]
    fn headings_start_sections_and_nest() {
        let text = "intro text\n# Install\nrun it\n## From source\nbuild it\n# Use\ncall it\n";
        let c = cut(text, 50, 0);
        let got: Vec<_> = c
            .iter()
            .map(|c| (c.heading.as_deref(), c.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "intro text"),
                (Some("Install"), "run it"),
                (Some("Install > From source"), "build it"),
                (Some("Use"), "call it"),
            ]
        );
        assert_eq!(c[2].embedding_text(), "Install > From source\nbuild it");
    }

    #[test]
    fn hashes_in_code_fences_and_without_space_are_not_headings() {
        let c = cut("```\n# not a heading\n```\n#hashtag here\n", 50, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].heading, None);
        assert!(c[0].text.contains("# not a heading"));
        assert!(c[0].text.contains("#hashtag"));
    }

    #[test]
    fn long_paragraphs_split_on_sentences_with_overlap() {
        let text = "a b c. d e f. g h i. j k l.";
        let c = cut(text, 6, 3);
        let texts: Vec<_> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            vec!["a b c.\n\nd e f.", "d e f.\n\ng h i.", "g h i.\n\nj k l."]
        );
        assert!(c.iter().all(|c| c.tokens <= 6));
        assert_eq!(c.iter().map(|c| c.ord).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn a_sentence_longer_than_a_chunk_is_cut_between_words() {
        let text = (0..25)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let c = cut(&text, 10, 0);
        assert_eq!(
            c.iter().map(|c| c.tokens).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let joined = c
            .iter()
            .map(|c| c.text.clone())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            joined, text,
            "nothing lost, nothing repeated without overlap"
        );
    }

    #[test]
    fn a_word_longer_than_a_chunk_is_cut_inside() {
        let long = "x".repeat(100);
        let count = |s: &str| s.len().div_ceil(10);
        let c = chunk(
            &long,
            Sizes {
                tokens: 3,
                overlap: 0,
            },
            &count,
        );
        assert!(c.len() >= 4, "{c:?}");
        assert!(c.iter().all(|c| c.tokens <= 3), "{c:?}");
        assert_eq!(c.iter().map(|c| c.text.len()).sum::<usize>(), 100);
    }

    #[test]
    fn empty_and_blank_documents_have_no_chunks() {
        assert!(cut("", 10, 2).is_empty());
        assert!(cut("\n\n  \n# Only a heading\n", 10, 2).is_empty());
    }

    #[test]
    fn overlap_never_stalls() {
        // Every unit as large as the overlap allows: progress must still be made.
        let text = "a b. c d. e f. g h.";
        let c = cut(text, 4, 2);
        assert!(c.len() <= 4, "{c:?}");
        assert!(c.last().unwrap().text.ends_with("g h."));
    }
}
