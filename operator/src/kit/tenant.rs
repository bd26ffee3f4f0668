//! Tenant ids the operator writes rows under: the ones the runtime reads from JWTs.

use kube::ResourceExt;

use super::text::shorten;

/// Characters of a tenant id: a DNS label, as a namespace name is.
pub const MAX_TENANT: usize = 63;

/// Whether `s` can be a tenant id: a lowercase DNS label (what a namespace name is, and what
/// the CRDs allow in spec.tenant).
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= MAX_TENANT
        && b.iter().all(inner)
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
}

/// The tenant of a resource: the one its spec names, else its namespace (a namespace is a
/// tenant unless the resource names another).
pub fn of<K: ResourceExt>(named: Option<&str>, obj: &K) -> String {
    named
        .map(String::from)
        .unwrap_or_else(|| obj.namespace().unwrap_or_default())
}

/// Why a tenant id cannot be used, for a condition; the id is quoted and shortened, since it
/// may be anything.
pub fn problem(s: &str) -> String {
    let shown = shorten(s, 80);
    format!(
        "tenant {shown:?} is not a lowercase name of letters, digits and '-' of at most {MAX_TENANT} characters"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_dns_labels() {
        for ok in ["team-a", "a", "0", &"x".repeat(63)] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "Team",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "ä",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert!(problem(&"é".repeat(500)).chars().count() < 200);
    }
}
