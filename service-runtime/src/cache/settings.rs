//! Settings of the cache component, read when it is built.

use crate::platform::config::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Settings {
    /// TTL of items stored without one, in seconds (FAAS_CACHE_DEFAULT_TTL_SECS).
    pub default_ttl_secs: u64,
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let default_ttl_secs = src.parse("FAAS_CACHE_DEFAULT_TTL_SECS", 3600u64)?;
        if default_ttl_secs == 0 || default_ttl_secs > super::MAX_TTL {
            return Err(ConfigError::Invalid {
                name: "FAAS_CACHE_DEFAULT_TTL_SECS",
                reason: format!("must be between 1 and {}", super::MAX_TTL),
            });
        }
        Ok(Self { default_ttl_secs })
    }
}
