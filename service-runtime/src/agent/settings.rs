//! Settings of the agent component, read when it is built. The gateway's URL
//! (`FAAS_GATEWAY_URL`) and the egress allowlist (`FAAS_EGRESS_ALLOW`) are the platform's.

use std::path::PathBuf;
use std::time::Duration;

use crate::platform::config::{ConfigError, Source};

/// Where the Secrets that tools name are mounted: `<dir>/<tenant>/<secret>/<key>`.
pub const SECRETS_DIR: &str = "FAAS_AGENT_SECRETS_DIR";
/// How deep agents may call agents as tools.
pub const MAX_DEPTH: &str = "FAAS_AGENT_MAX_DEPTH";
/// The most of a tool's answer read, in bytes.
pub const TOOL_MAX_RESPONSE_BYTES: &str = "FAAS_AGENT_TOOL_MAX_RESPONSE_BYTES";
/// The longest input of a task, in characters.
pub const MAX_INPUT_CHARS: &str = "FAAS_AGENT_MAX_INPUT_CHARS";
/// Estimated tokens of a session's messages past which a summary memory rolls them up.
pub const SUMMARY_TOKENS: &str = "FAAS_AGENT_SUMMARY_TOKENS";
/// How long a call to the rag or prompt component may take, in seconds.
pub const PEER_TIMEOUT: &str = "FAAS_AGENT_PEER_TIMEOUT_SECS";
/// The rag component's URL (set by the operator from `dependsOn`).
pub const RAG_URL: &str = "FAAS_RAG_URL";
/// The prompt component's URL (set by the operator from `dependsOn`).
pub const PROMPT_URL: &str = "FAAS_PROMPT_URL";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where tool Secrets are read from (FAAS_AGENT_SECRETS_DIR); none: tools that name a
    /// Secret fail.
    pub secrets_dir: Option<PathBuf>,
    /// Agents calling agents as tools nest at most this deep (FAAS_AGENT_MAX_DEPTH, 1 to
    /// 10, default 3): the agent invoked is depth 1.
    pub max_depth: usize,
    /// The most of a tool's answer read (FAAS_AGENT_TOOL_MAX_RESPONSE_BYTES, 1 KiB to
    /// 16 MiB, default 256 KiB); a longer answer is a tool error.
    pub tool_max_response_bytes: usize,
    /// The longest input of a task (FAAS_AGENT_MAX_INPUT_CHARS, default 32768).
    pub max_input_chars: usize,
    /// A summary memory rolls up the messages it does not keep verbatim once the
    /// session's messages are estimated above this many tokens (FAAS_AGENT_SUMMARY_TOKENS,
    /// default 2000).
    pub summary_tokens: usize,
    /// Time limit of a call to rag or prompt (FAAS_AGENT_PEER_TIMEOUT_SECS, default 30).
    pub peer_timeout: Duration,
    /// The rag component (FAAS_RAG_URL); none: rag tools and retrieval fail.
    pub rag_url: Option<url::Url>,
    /// The prompt component (FAAS_PROMPT_URL); none: agents with a promptTemplateRef fail.
    pub prompt_url: Option<url::Url>,
}

fn base_url(src: &Source, name: &'static str) -> Result<Option<url::Url>, ConfigError> {
    let Some(raw) = src.get(name) else {
        return Ok(None);
    };
    let mut url = url::Url::parse(&raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ConfigError::Invalid {
            name,
            reason: format!("{raw:?} is not an http(s) URL"),
        })?;
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(Some(url))
}

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let peer_timeout = src.secs(PEER_TIMEOUT, 30.0)?;
        if peer_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: PEER_TIMEOUT,
                reason: "must be more than 0".into(),
            });
        }
        Ok(Self {
            secrets_dir: src.get(SECRETS_DIR).map(PathBuf::from),
            max_depth: src.parse_within(MAX_DEPTH, 3, 1..=10)?,
            tool_max_response_bytes: src.parse_within(
                TOOL_MAX_RESPONSE_BYTES,
                256 * 1024,
                1024..=16 * 1024 * 1024,
            )?,
            max_input_chars: src.parse_within(MAX_INPUT_CHARS, 32 * 1024, 1..=1024 * 1024)?,
            summary_tokens: src.parse_within(SUMMARY_TOKENS, 2000, 1..=1_000_000)?,
            peer_timeout,
            rag_url: base_url(src, RAG_URL)?,
            prompt_url: base_url(src, PROMPT_URL)?,
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
    fn defaults_and_bounds() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.max_depth, 3);
        assert_eq!(s.tool_max_response_bytes, 256 * 1024);
        assert!(s.secrets_dir.is_none() && s.rag_url.is_none());
        let s = settings(&[(RAG_URL, "http://rag.team-a.svc:8080")]).unwrap();
        assert_eq!(s.rag_url.unwrap().as_str(), "http://rag.team-a.svc:8080/");
        for (name, bad) in [
            (MAX_DEPTH, "0"),
            (MAX_DEPTH, "11"),
            (TOOL_MAX_RESPONSE_BYTES, "10"),
            (RAG_URL, "ftp://x"),
            (PEER_TIMEOUT, "0"),
        ] {
            let e = settings(&[(name, bad)]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={bad}: {e}");
        }
    }
}
