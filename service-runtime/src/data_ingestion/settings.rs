//! Settings of the data-ingestion component, read when it is built.

use std::time::Duration;

use crate::platform::config::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest file accepted, in bytes (FAAS_INGEST_MAX_FILE_BYTES).
    pub max_file_bytes: usize,
    /// Most text one file may give, in bytes (FAAS_INGEST_MAX_TEXT_BYTES).
    pub max_text_bytes: usize,
    /// Time one parse may take (FAAS_INGEST_PARSE_TIMEOUT_SECS).
    pub parse_timeout: Duration,
    /// Parses one process runs at once (FAAS_INGEST_PARSE_CONCURRENCY).
    pub parse_concurrency: usize,
    /// How long a worker's claim on a job lasts unless renewed (FAAS_INGEST_LEASE_SECS);
    /// a job whose worker died is taken over once it has run out.
    pub lease: Duration,
    /// How long a recorded job may wait for its message before the sweeper sends it, and
    /// how often the sweeper looks (FAAS_INGEST_OUTBOX_SECS).
    pub outbox_after: Duration,
}

/// Files are kept in Postgres until their job ends; a bytea holds at most 1 GiB.
const MAX_FILE_LIMIT: usize = 256 * 1024 * 1024;

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let bytes = 1..=MAX_FILE_LIMIT;
        let max_file_bytes = src.parse_within(
            "FAAS_INGEST_MAX_FILE_BYTES",
            20 * 1024 * 1024,
            bytes.clone(),
        )?;
        let max_text_bytes =
            src.parse_within("FAAS_INGEST_MAX_TEXT_BYTES", 5 * 1024 * 1024, bytes)?;
        let parse_timeout = src.secs_within("FAAS_INGEST_PARSE_TIMEOUT_SECS", 10.0, 0.1, 600.0)?;
        let parse_concurrency = src.parse_within("FAAS_INGEST_PARSE_CONCURRENCY", 2, 1..=64)?;
        let lease = src.secs_within("FAAS_INGEST_LEASE_SECS", 20.0, 2.0, 3600.0)?;
        let outbox_after = src.secs_within("FAAS_INGEST_OUTBOX_SECS", 30.0, 0.2, 3600.0)?;
        Ok(Self {
            max_file_bytes,
            max_text_bytes,
            parse_timeout,
            parse_concurrency,
            lease,
            outbox_after,
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
        let s = settings(&[]).unwrap();
        assert_eq!(s.max_file_bytes, 20 * 1024 * 1024);
        assert_eq!(s.max_text_bytes, 5 * 1024 * 1024);
        assert_eq!(s.parse_timeout, Duration::from_secs(10));
        for (name, bad) in [
            ("FAAS_INGEST_MAX_FILE_BYTES", "0"),
            ("FAAS_INGEST_MAX_FILE_BYTES", "lots"),
            ("FAAS_INGEST_MAX_TEXT_BYTES", "0"),
            ("FAAS_INGEST_PARSE_TIMEOUT_SECS", "0"),
            ("FAAS_INGEST_PARSE_CONCURRENCY", "0"),
            ("FAAS_INGEST_LEASE_SECS", "1"),
            ("FAAS_INGEST_OUTBOX_SECS", "0"),
            ("FAAS_INGEST_OUTBOX_SECS", "7200"),
        ] {
            let err = settings(&[(name, bad)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={bad}: {err}");
        }
    }
}
