//! What the rag component and its callers agree on about collections.

/// Characters of a collection's name.
pub const MAX_COLLECTION_NAME: usize = 63;

/// Whether `name` can name a collection: 1 to [`MAX_COLLECTION_NAME`] of a-z, 0-9, `.`, `_`
/// and `-`, starting with a letter or digit.
pub fn is_collection_name(name: &str) -> bool {
    (1..=MAX_COLLECTION_NAME).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        for ok in ["docs", "0day", "a.b_c-d", &"x".repeat(63)] {
            assert!(is_collection_name(ok), "{ok}");
        }
        for bad in ["", "-docs", "Docs", "a/b", "../x", "tëst", &"x".repeat(64)] {
            assert!(!is_collection_name(bad), "{bad}");
        }
    }
}
