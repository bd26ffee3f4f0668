//! Text put where its size is limited: condition messages, Event notes, what a user wrote
//! quoted in them.

const ELLIPSIS: char = '…';

/// At most `max` characters of `s`, with '…' when cut: for names and values a user wrote,
/// which may be anything, quoted in a message.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push(ELLIPSIS);
    out
}

/// `s` cut to at most `max` bytes on a char boundary, ending in '…' when cut (if `max` leaves
/// room for it).
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mark = max >= ELLIPSIS.len_utf8();
    let mut at = if mark { max - ELLIPSIS.len_utf8() } else { max };
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
    if mark {
        s.push(ELLIPSIS);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten(&"é".repeat(90), 80), format!("{}…", "é".repeat(80)));
    }

    #[test]
    fn bounded_cuts_on_a_char_boundary_and_never_exceeds_the_limit() {
        assert_eq!(bounded("short".into(), 10), "short");
        assert_eq!(bounded("x".repeat(10), 10), "x".repeat(10));
        assert_eq!(bounded("abcdefghijk".into(), 10), "abcdefg…");
        for (s, max) in [
            ("é".repeat(400), 300),
            ("aé€😀".repeat(300), 1024),
            ("ab".into(), 2),
        ] {
            let cut = bounded(s.clone(), max);
            assert!(cut.len() <= max, "{} > {max}", cut.len());
            assert!(s.starts_with(cut.trim_end_matches(ELLIPSIS)));
        }
        assert_eq!(bounded("abc".into(), 2), "ab", "no room for '…'");
    }
}
