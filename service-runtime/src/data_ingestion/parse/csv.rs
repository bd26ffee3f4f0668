//! CSV: each row becomes a paragraph of `header: value` lines, so every chunk carries the
//! names of its columns. Commas or semicolons (whichever the header line uses more),
//! quoted fields, ragged rows; rows and columns are bounded.

use super::{Budget, ParseError, text};

/// Rows read, the header included.
pub const MAX_ROWS: usize = 200_000;
pub const MAX_COLUMNS: usize = 512;

pub fn parse(bytes: &[u8], budget: &mut Budget) -> Result<(), ParseError> {
    let source = text::decode(bytes)?;
    let first_line = source.lines().next().unwrap_or("");
    let delimiter = if first_line.matches(';').count() > first_line.matches(',').count() {
        b';'
    } else {
        b','
    };
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(source.as_bytes());
    let mut headers: Vec<String> = Vec::new();
    let mut record = ::csv::StringRecord::new();
    let mut row = 0usize;
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| ParseError::Invalid(format!("the CSV could not be read: {e}")))?;
        if !more {
            break;
        }
        row += 1;
        if row > MAX_ROWS {
            return Err(ParseError::Invalid(format!(
                "the CSV has more than the limit of {MAX_ROWS} rows"
            )));
        }
        if record.len() > MAX_COLUMNS {
            return Err(ParseError::Invalid(format!(
                "row {row} of the CSV has {} columns, more than the limit of {MAX_COLUMNS}",
                record.len()
            )));
        }
        if row.is_multiple_of(256) {
            budget.tick()?;
        }
        if row == 1 {
            headers = record
                .iter()
                .enumerate()
                .map(|(i, h)| match h.trim() {
                    "" => format!("column {}", i + 1),
                    name => name.to_string(),
                })
                .collect();
            continue;
        }
        budget.paragraph()?;
        for (i, value) in record.iter().enumerate() {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            budget.newline()?;
            match headers.get(i) {
                Some(h) => budget.push(h)?,
                None => budget.push(&format!("column {}", i + 1))?,
            }
            budget.push(": ")?;
            // A value's own line breaks would read as new fields.
            budget.push(&value.replace(['\r', '\n'], " "))?;
        }
    }
    if row == 1 {
        // A header and no rows: the header is the only text.
        budget.push(&headers.join(", "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::data_ingestion::parse::{Kind, ParseError, parse, test_budget};

    #[test]
    fn rows_become_header_value_lines() {
        let csv = b"name,city,note\nAda,London,\"first, programmer\"\nLinus,,\"multi\nline\"\n";
        assert_eq!(
            parse(Kind::Csv, csv, test_budget()).unwrap(),
            "name: Ada\ncity: London\nnote: first, programmer\n\nname: Linus\nnote: multi line"
        );
        let semi = b"a;b\n1;2;3\n";
        assert_eq!(
            parse(Kind::Csv, semi, test_budget()).unwrap(),
            "a: 1\nb: 2\ncolumn 3: 3"
        );
    }

    #[test]
    fn columns_and_rows_are_bounded() {
        let wide = format!("{}\n", vec!["x"; 600].join(","));
        let err = parse(Kind::Csv, wide.as_bytes(), test_budget()).unwrap_err();
        assert!(
            matches!(err, ParseError::Invalid(ref m) if m.contains("512")),
            "{err}"
        );
        let long = "a\n".repeat(super::MAX_ROWS + 2);
        let roomy =
            crate::data_ingestion::parse::Budget::new(crate::data_ingestion::parse::Limits {
                max_text_bytes: 64 * 1024 * 1024,
                timeout: std::time::Duration::from_secs(30),
            });
        let err = parse(Kind::Csv, long.as_bytes(), roomy).unwrap_err();
        assert!(err.to_string().contains("rows"), "{err}");
    }
}
