//! Settings of the gateway, read when it is built.

use std::time::Duration;

use crate::platform::config::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a cached answer to a deterministic request is kept
    /// (FAAS_GATEWAY_CACHE_TTL_SECS, at least one second).
    pub cache_ttl: Duration,
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let cache_ttl = src.secs("FAAS_GATEWAY_CACHE_TTL_SECS", 300.0)?;
        if cache_ttl < Duration::from_secs(1) {
            return Err(ConfigError::Invalid {
                name: "FAAS_GATEWAY_CACHE_TTL_SECS",
                reason: "must be at least 1 second".into(),
            });
        }
        Ok(Self { cache_ttl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(&Source::from_pairs(pairs))
    }

    #[test]
    fn the_cache_ttl_defaults_and_bad_values_name_the_setting() {
        assert_eq!(settings(&[]).unwrap().cache_ttl, Duration::from_secs(300));
        assert_eq!(
            settings(&[("FAAS_GATEWAY_CACHE_TTL_SECS", "2.5")])
                .unwrap()
                .cache_ttl,
            Duration::from_millis(2500)
        );
        for bad in ["0", "0.5", "-1", "soon", "NaN"] {
            let e = settings(&[("FAAS_GATEWAY_CACHE_TTL_SECS", bad)]).unwrap_err();
            assert!(
                e.to_string().contains("FAAS_GATEWAY_CACHE_TTL_SECS"),
                "{bad}: {e}"
            );
        }
    }
}
