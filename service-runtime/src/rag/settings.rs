//! Settings of the rag component, read when it is built (the document store's own are
//! in `shared::documents::settings`).

use crate::platform::config::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The chat model answers use when the request names none (FAAS_RAG_ANSWER_MODEL).
    pub answer_model: Option<String>,
}

pub const ANSWER_MODEL: &str = "FAAS_RAG_ANSWER_MODEL";

impl Settings {
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let answer_model = src.get(ANSWER_MODEL).filter(|m| !m.trim().is_empty());
        if answer_model
            .as_ref()
            .is_some_and(|m| m.len() > 256 || m.chars().any(char::is_control))
        {
            return Err(ConfigError::Invalid {
                name: ANSWER_MODEL,
                reason: "at most 256 characters, no control characters".into(),
            });
        }
        Ok(Self { answer_model })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_source(&Source::from_pairs(pairs))
    }

    #[test]
    fn the_answer_model_is_optional_and_checked() {
        assert_eq!(settings(&[]).unwrap().answer_model, None);
        assert_eq!(
            settings(&[(ANSWER_MODEL, "gpt-4o-mini")])
                .unwrap()
                .answer_model
                .as_deref(),
            Some("gpt-4o-mini")
        );
        let e = settings(&[(ANSWER_MODEL, &"m".repeat(300))]).unwrap_err();
        assert!(e.to_string().contains(ANSWER_MODEL), "{e}");
    }
}
