//! Plain text: UTF-8 (a byte-order mark is dropped) or UTF-16 with its byte-order mark;
//! line endings become `\n`.

use super::{Budget, ParseError};

/// The text of `bytes`, or why it is not text.
pub fn decode(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, ParseError> {
    if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return utf8(rest).map(std::borrow::Cow::Borrowed);
    }
    for (bom, little) in [(b"\xff\xfe", true), (b"\xfe\xff", false)] {
        if let Some(rest) = bytes.strip_prefix(bom) {
            return utf16(rest, little).map(std::borrow::Cow::Owned);
        }
    }
    utf8(bytes).map(std::borrow::Cow::Borrowed)
}

fn utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ParseError::Invalid(format!(
            "the file is not UTF-8 text: invalid bytes at offset {}",
            e.valid_up_to()
        ))
    })
}

fn utf16(bytes: &[u8], little: bool) -> Result<String, ParseError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(ParseError::Invalid(
            "the file is not UTF-16 text: an odd number of bytes".into(),
        ));
    }
    let units = bytes.chunks_exact(2).map(|p| {
        if little {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| {
            ParseError::Invalid("the file is not UTF-16 text: an unpaired surrogate".into())
        })
}

/// Writes `text` with its line endings made `\n`, a line at a time.
pub fn push_lines(text: &str, budget: &mut Budget) -> Result<(), ParseError> {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            budget.push("\n")?;
        }
        if i.is_multiple_of(1024) {
            budget.tick()?;
        }
        budget.push(line.strip_suffix('\r').unwrap_or(line))?;
    }
    Ok(())
}

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    push_lines(&decode(bytes)?, budget)
}

#[cfg(test)]
mod tests {
    use crate::data_ingestion::parse::{Kind, parse as parse_file, test_budget};

    #[test]
    fn utf8_and_utf16_decode_and_line_endings_are_unified() {
        let text = parse_file(Kind::Text, b"\xef\xbb\xbfone\r\ntwo\n", test_budget()).unwrap();
        assert_eq!(text, "one\ntwo");
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("h\u{e9}".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(
            parse_file(Kind::Text, &utf16, test_budget()).unwrap(),
            "h\u{e9}"
        );
        let err = parse_file(Kind::Text, b"ok \xc3\x28", test_budget()).unwrap_err();
        assert!(err.to_string().contains("offset 3"), "{err}");
    }
}
