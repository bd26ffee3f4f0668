//! Settings of the document store, read when a component that uses it is built. Their
//! names are rag's: the store is rag's, data ingestion writes into it.

use std::time::Duration;

use crate::platform::config::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long one call to the gateway may take (FAAS_RAG_GATEWAY_TIMEOUT_SECS).
    pub gateway_timeout: Duration,
    /// Most bytes of text of one document (FAAS_RAG_MAX_DOCUMENT_BYTES).
    pub max_document_bytes: usize,
}

pub const GATEWAY_TIMEOUT: &str = "FAAS_RAG_GATEWAY_TIMEOUT_SECS";
pub const MAX_DOCUMENT_BYTES: &str = "FAAS_RAG_MAX_DOCUMENT_BYTES";

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            gateway_timeout: src.secs_within(GATEWAY_TIMEOUT, 120.0, 1.0, 86_400.0)?,
            max_document_bytes: src.parse_within(
                MAX_DOCUMENT_BYTES,
                5 * 1024 * 1024usize,
                1024..=64 * 1024 * 1024,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(&Source::from_pairs(pairs))
    }

    #[test]
    fn defaults_and_bad_values_name_the_setting() {
        let d = settings(&[]).unwrap();
        assert_eq!(d.gateway_timeout, Duration::from_secs(120));
        assert_eq!(d.max_document_bytes, 5 * 1024 * 1024);
        for (name, bad) in [
            (GATEWAY_TIMEOUT, "0.5"),
            (GATEWAY_TIMEOUT, "soon"),
            (MAX_DOCUMENT_BYTES, "10"),
            (MAX_DOCUMENT_BYTES, "-1"),
        ] {
            let e = settings(&[(name, bad)]).unwrap_err().to_string();
            assert!(e.contains(name), "{name}={bad}: {e}");
        }
    }
}
