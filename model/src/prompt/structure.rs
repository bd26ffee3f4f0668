//! A lexical check of a template's shape, run before minijinja parses it.
//!
//! minijinja's parser limits the nesting of brackets and blocks, but builds
//! postfix chains (`x|f|f…`, `a.b.b…`, `a[0][0]…`, `f()()…`), `not`/`-`
//! chains and binary-operator chains (`1+1+…`, `a ~ a ~ …`) without a bound,
//! and its code generator and the drop of the tree then recurse once per
//! link: one tag can overflow the stack and abort the process.
//!
//! Measured with minijinja 2.24 on a 2 MiB thread stack (tokio's workers and
//! blocking threads): a tag overflows from about 1,150 links in a debug build
//! (calls; 1,260 for binary operators, 1,410 for filters and attributes) and
//! 5,400 in a release build (unary minus; 8,150 for most others). Per level
//! of nesting the parser and code generator take about 1.8 KiB per link,
//! 17 KiB per bracket and 8 KiB per block in a debug build (0.4, 2 and 1.6 KiB
//! in release), and minijinja's own guard still lets about 50 brackets and
//! 150 blocks through. With the limits below a template needs at most about
//! 400 KiB of stack in a debug build and 70 KiB in release.
use minijinja::machinery::{Token, WhitespaceConfig, tokenize};

use super::SourceError;

/// Operators and chain links (`.`, `|`, `[`, `(`) in one tag.
pub const MAX_TAG_LINKS: usize = 128;
/// Nesting of `(`, `[` and `{` in one tag.
pub const MAX_BRACKET_DEPTH: usize = 16;
/// Nesting of block tags (`if`, `for`, `with`, …).
pub const MAX_BLOCK_DEPTH: usize = 16;

/// Block tags that are closed by an `end…` tag.
const OPENERS: [&str; 8] = [
    "if",
    "for",
    "with",
    "macro",
    "call",
    "filter",
    "autoescape",
    "block",
];

#[derive(Default)]
struct Tag {
    links: usize,
    depth: usize,
    max_depth: usize,
    first_ident: Option<String>,
    assigns: bool,
    line: u16,
    column: u16,
}

impl Tag {
    fn error(&self, what: String) -> SourceError {
        SourceError {
            line: Some(u32::from(self.line)),
            column: Some(u32::from(self.column) + 1),
            message: format!("line {}: {what}", self.line),
        }
    }
}

/// Checks the shape of `src`; the error names the line of the tag and the limit.
pub fn check(src: &str) -> Result<(), SourceError> {
    let mut blocks = 0usize;
    let mut tag: Option<Tag> = None;
    let tokens = tokenize(src, false, Default::default(), WhitespaceConfig::default());
    for item in tokens {
        let (token, span) = item.map_err(|e| SourceError::from_minijinja(&e, src))?;
        match token {
            Token::VariableStart | Token::BlockStart => {
                tag = Some(Tag {
                    line: span.start_line,
                    column: span.start_col,
                    ..Tag::default()
                })
            }
            Token::VariableEnd => tag = None,
            Token::BlockEnd => {
                if let Some(t) = tag.take() {
                    blocks = close_block(blocks, &t)?;
                }
            }
            other => {
                if let Some(t) = tag.as_mut() {
                    count(t, &other)?;
                }
            }
        }
    }
    Ok(())
}

/// A minijinja error as a client reads it.
pub fn describe(e: &minijinja::Error) -> String {
    let at = e
        .line()
        .map(|l| format!(" at line {l}"))
        .unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{}{at}{detail}", e.kind())
}

fn count(t: &mut Tag, token: &Token<'_>) -> Result<(), SourceError> {
    let link = match token {
        Token::Ident(id) => {
            if t.first_ident.is_none() {
                t.first_ident = Some((*id).to_string());
            }
            matches!(*id, "not" | "and" | "or" | "in" | "is" | "if" | "else")
        }
        Token::Assign => {
            t.assigns = true;
            false
        }
        Token::BracketOpen | Token::ParenOpen | Token::BraceOpen => {
            t.depth += 1;
            t.max_depth = t.max_depth.max(t.depth);
            if t.max_depth > MAX_BRACKET_DEPTH {
                return Err(t.error(format!(
                    "brackets nested deeper than {MAX_BRACKET_DEPTH} levels"
                )));
            }
            !matches!(token, Token::BraceOpen)
        }
        Token::BracketClose | Token::ParenClose | Token::BraceClose => {
            t.depth = t.depth.saturating_sub(1);
            false
        }
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::FloorDiv
        | Token::Pow
        | Token::Mod
        | Token::Dot
        | Token::Tilde
        | Token::Pipe
        | Token::Eq
        | Token::Ne
        | Token::Gt
        | Token::Gte
        | Token::Lt
        | Token::Lte => true,
        _ => false,
    };
    if link {
        t.links += 1;
        if t.links > MAX_TAG_LINKS {
            return Err(t.error(format!(
                "more than {MAX_TAG_LINKS} operators, filters, attribute accesses, \
                 subscripts or calls in one tag"
            )));
        }
    }
    Ok(())
}

fn close_block(blocks: usize, t: &Tag) -> Result<usize, SourceError> {
    let Some(first) = t.first_ident.as_deref() else {
        return Ok(blocks);
    };
    let opens = OPENERS.contains(&first) || (first == "set" && !t.assigns);
    if opens {
        if blocks + 1 > MAX_BLOCK_DEPTH {
            return Err(t.error(format!(
                "blocks nested deeper than {MAX_BLOCK_DEPTH} levels"
            )));
        }
        return Ok(blocks + 1);
    }
    if first.starts_with("end") {
        return Ok(blocks.saturating_sub(1));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_templates_pass() {
        let t = "{% for m in messages if m.role != 'tool' %}{{ loop.index }}. \
                 {{ m.content|trim|upper }}{% if not loop.last %}\n{% endif %}{% endfor %}";
        assert_eq!(check(t), Ok(()));
    }

    #[test]
    fn long_chains_and_deep_nesting_are_refused() {
        for t in [
            format!("{{{{ x{} }}}}", "|e".repeat(200)),
            format!("{{{{ x{} }}}}", ".b".repeat(200)),
            format!("{{{{ x{} }}}}", "[0]".repeat(200)),
            format!("{{{{ x{} }}}}", "()".repeat(200)),
            format!("{{{{ {}x }}}}", "not ".repeat(200)),
            format!("{{{{ {}x }}}}", "- ".repeat(200)),
            format!("{{{{ x{} }}}}", "~x".repeat(200)),
            format!("{{% set a = 1{} %}}", "+1".repeat(200)),
        ] {
            let e = check(&t).unwrap_err();
            assert!(e.message.contains("more than 128"), "{e}");
            assert_eq!((e.line, e.column), (Some(1), Some(1)), "{e}");
        }
        let e = check(&format!("{{{{ {}x{} }}}}", "[".repeat(20), "]".repeat(20))).unwrap_err();
        assert!(e.message.contains("deeper than 16"), "{e}");
        let nested = format!("{}x{}", "{% if x %}".repeat(20), "{% endif %}".repeat(20));
        let e = check(&nested).unwrap_err();
        assert!(e.message.contains("blocks nested"), "{e}");
        // The 17th block tag opens at column 10 * 16 + 1.
        assert_eq!((e.line, e.column), (Some(1), Some(161)), "{e}");
        let e = check(&format!("ok\n  {{{{ x{} }}}}", "|e".repeat(200))).unwrap_err();
        assert!(e.to_string().starts_with("line 2: more than 128"), "{e}");
        assert_eq!((e.line, e.column), (Some(2), Some(3)), "{e}");
        let sets = "{% set a %}x{% endset %}".repeat(100);
        assert_eq!(check(&sets), Ok(()));
    }
}
