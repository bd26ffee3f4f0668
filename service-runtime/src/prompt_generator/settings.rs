//! Settings of the prompt-generator component, read when it is built. The gateway's URL
//! (`FAAS_GATEWAY_URL`) and the egress allowlist the generated tools are checked against
//! (`FAAS_EGRESS_ALLOW`) are the platform's.

use std::time::Duration;

use crate::platform::config::{ConfigError, Source};

/// The gateway model generations use when a request names none, e.g. `openai/gpt-4o`.
pub const MODEL: &str = "FAAS_PROMPTGEN_MODEL";
/// The most model answers one generation may take (the first and its corrections).
pub const MAX_ATTEMPTS: &str = "FAAS_PROMPTGEN_MAX_ATTEMPTS";
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: &str = "FAAS_PROMPTGEN_MAX_DESCRIPTION_CHARS";
/// The most tokens of one model answer.
pub const MAX_TOKENS: &str = "FAAS_PROMPTGEN_MAX_TOKENS";
/// The longest one generation may take, in seconds, every attempt included.
pub const TIMEOUT: &str = "FAAS_PROMPTGEN_TIMEOUT_SECS";
/// Roles that may generate (comma-separated; `*`: any caller of the tenant).
pub const GENERATE_ROLES: &str = "FAAS_PROMPTGEN_GENERATE_ROLES";
/// Roles that may create an agent from a generation (comma-separated).
pub const CREATE_ROLES: &str = "FAAS_PROMPTGEN_CREATE_ROLES";

/// Who may do something: any caller, or holders of one of these roles. The tenant's admin
/// always may.
#[derive(Debug, Clone, PartialEq)]
pub enum Roles {
    Anyone,
    AnyOf(Vec<String>),
}

impl Roles {
    fn from_source(src: &Source, name: &'static str, default: &str) -> Result<Self, ConfigError> {
        let raw = src.get(name).unwrap_or_else(|| default.to_string());
        let roles: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect();
        if roles.iter().any(|r| r == "*") {
            return if roles.len() == 1 {
                Ok(Roles::Anyone)
            } else {
                Err(ConfigError::Invalid {
                    name,
                    reason: "`*` stands alone: it already means any caller".into(),
                })
            };
        }
        if roles.iter().any(|r| r.len() > 256) {
            return Err(ConfigError::Invalid {
                name,
                reason: "a role name is at most 256 characters".into(),
            });
        }
        Ok(Roles::AnyOf(roles))
    }

    /// Whether a caller with `held` roles (`admin`: the tenant's admin) may.
    pub fn allow(&self, held: &[String], admin: bool) -> bool {
        admin
            || match self {
                Roles::Anyone => true,
                Roles::AnyOf(roles) => held.iter().any(|h| roles.contains(h)),
            }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The model of a request that names none (FAAS_PROMPTGEN_MODEL); none: requests must
    /// name one.
    pub model: Option<String>,
    /// Model answers per generation at most (FAAS_PROMPTGEN_MAX_ATTEMPTS, 1 to 10,
    /// default 3); a request may ask for fewer.
    pub max_attempts: u32,
    /// Longest description (FAAS_PROMPTGEN_MAX_DESCRIPTION_CHARS, 1 to 65536, default
    /// 8000).
    pub max_description_chars: usize,
    /// Most tokens of one answer (FAAS_PROMPTGEN_MAX_TOKENS, 256 to 65536, default 4096).
    pub max_tokens: u32,
    /// Time limit of one generation (FAAS_PROMPTGEN_TIMEOUT_SECS, 1 to 3600, default 180).
    pub timeout: Duration,
    /// Who may generate (FAAS_PROMPTGEN_GENERATE_ROLES, default `*`).
    pub generate: Roles,
    /// Who may create an agent from a generation (FAAS_PROMPTGEN_CREATE_ROLES, default
    /// none: the tenant's admin only).
    pub create: Roles,
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let model = src.get(MODEL).map(|m| m.trim().to_string());
        if let Some(m) = &model
            && (m.is_empty() || m.len() > 256)
        {
            return Err(ConfigError::Invalid {
                name: MODEL,
                reason: "a model name of 1 to 256 characters".into(),
            });
        }
        Ok(Self {
            model,
            max_attempts: src.parse_within(MAX_ATTEMPTS, 3, 1..=10)?,
            max_description_chars: src.parse_within(MAX_DESCRIPTION_CHARS, 8000, 1..=65536)?,
            max_tokens: src.parse_within(MAX_TOKENS, 4096, 256..=65536)?,
            timeout: src.secs_within(TIMEOUT, 180.0, 1.0, 3600.0)?,
            generate: Roles::from_source(src, GENERATE_ROLES, "*")?,
            create: Roles::from_source(src, CREATE_ROLES, "")?,
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
    fn defaults_bounds_and_roles() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.max_attempts, 3);
        assert_eq!(s.generate, Roles::Anyone);
        assert_eq!(s.create, Roles::AnyOf(vec![]));
        assert!(s.generate.allow(&[], false));
        assert!(!s.create.allow(&["writer".into()], false));
        assert!(s.create.allow(&[], true));

        let s = settings(&[
            (GENERATE_ROLES, "agent-author, writer"),
            (CREATE_ROLES, "agent-author"),
        ])
        .unwrap();
        assert!(s.generate.allow(&["writer".into()], false));
        assert!(!s.generate.allow(&["reader".into()], false));
        assert!(s.create.allow(&["agent-author".into()], false));

        let long = "m".repeat(300);
        for (name, bad) in [
            (MAX_ATTEMPTS, "0"),
            (MAX_ATTEMPTS, "11"),
            (MAX_TOKENS, "10"),
            (TIMEOUT, "0"),
            (GENERATE_ROLES, "*, writer"),
            (MODEL, long.as_str()),
        ] {
            let e = settings(&[(name, bad)]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={bad}: {e}");
        }
    }
}
