//! Markdown is kept as Markdown: its headings and lists are what the chunker splits on.

use super::{Budget, ParseError, text};

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    text::push_lines(&text::decode(bytes)?, budget)
}

#[cfg(test)]
mod tests {
    use crate::data_ingestion::parse::{Kind, parse, test_budget};

    #[test]
    fn headings_survive() {
        let md = b"# Title\r\n\nSome *text*.\n\n## Part\n- item\n";
        assert_eq!(
            parse(Kind::Markdown, md, test_budget()).unwrap(),
            "# Title\n\nSome *text*.\n\n## Part\n- item"
        );
    }
}
