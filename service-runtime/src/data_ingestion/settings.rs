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

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let max_file_bytes: usize = src.parse("FAAS_INGEST_MAX_FILE_BYTES", 20 * 1024 * 1024)?;
        if !(1..=MAX_FILE_LIMIT).contains(&max_file_bytes) {
            return Err(invalid(
                "FAAS_INGEST_MAX_FILE_BYTES",
                format!("must be between 1 and {MAX_FILE_LIMIT}"),
            ));
        }
        let max_text_bytes: usize = src.parse("FAAS_INGEST_MAX_TEXT_BYTES", 5 * 1024 * 1024)?;
        if !(1..=MAX_FILE_LIMIT).contains(&max_text_bytes) {
            return Err(invalid(
                "FAAS_INGEST_MAX_TEXT_BYTES",
                format!("must be between 1 and {MAX_FILE_LIMIT}"),
            ));
        }
        let parse_timeout = src.secs("FAAS_INGEST_PARSE_TIMEOUT_SECS", 10.0)?;
        if parse_timeout < Duration::from_millis(100) || parse_timeout > Duration::from_secs(600) {
            return Err(invalid(
                "FAAS_INGEST_PARSE_TIMEOUT_SECS",
                "must be between 0.1 and 600 seconds",
            ));
        }
        let parse_concurrency: usize = src.parse("FAAS_INGEST_PARSE_CONCURRENCY", 2)?;
        if !(1..=64).contains(&parse_concurrency) {
            return Err(invalid(
                "FAAS_INGEST_PARSE_CONCURRENCY",
                "must be between 1 and 64",
            ));
        }
        let lease = src.secs("FAAS_INGEST_LEASE_SECS", 20.0)?;
        if lease < Duration::from_secs(2) || lease > Duration::from_secs(3600) {
            return Err(invalid(
                "FAAS_INGEST_LEASE_SECS",
                "must be between 2 and 3600 seconds",
            ));
        }
        let outbox_after = src.secs("FAAS_INGEST_OUTBOX_SECS", 30.0)?;
        if outbox_after < Duration::from_millis(200) || outbox_after > Duration::from_secs(3600) {
            return Err(invalid(
                "FAAS_INGEST_OUTBOX_SECS",
                "must be between 0.2 and 3600 seconds",
            ));
        }
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
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_source(&Source::new(env).unwrap())
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
