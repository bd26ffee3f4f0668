//! The platform components the shared runtime serves, and what each needs from outside.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A platform component: the `component` of a FaasService and the `--service` of the runtime.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Component {
    Gateway,
    Cache,
    Prompt,
    Llmops,
    Rag,
    DataIngestion,
    Agent,
    PromptGenerator,
    Ml,
}

impl Component {
    /// Every component, in the order of the documentation.
    pub const ALL: &'static [Component] = <Component as strum::VariantArray>::VARIANTS;

    /// The name used on the runtime's command line, in labels and in URLs.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The backing services this component cannot run without.
    pub fn backends(self) -> &'static [Backend] {
        use Backend::*;
        match self {
            Component::Gateway => &[Database, Cache, Nats],
            Component::Cache => &[Cache],
            Component::Prompt => &[Database],
            Component::Llmops => &[Database, Nats],
            Component::Rag => &[Database, Nats],
            Component::DataIngestion => &[Database, Nats],
            Component::Agent => &[Database, Nats],
            Component::PromptGenerator => &[Database],
            Component::Ml => &[Database],
        }
    }

    /// Whether the runtime image of this release serves the component. The runtime's tests
    /// hold this to what its binary serves, and the operator refuses a FaasService of a
    /// component its default image does not serve rather than start pods that would exit.
    pub fn served(self) -> bool {
        !matches!(self, Component::Ml)
    }

    /// Whether the component needs `backend`.
    pub fn needs(self, backend: Backend) -> bool {
        self.backends().contains(&backend)
    }

    /// The environment variable through which other components reach this one
    /// (`FAAS_<COMPONENT>_URL`, set by the operator from `dependsOn`).
    pub fn url_env(self) -> String {
        format!(
            "FAAS_{}_URL",
            self.as_str().replace('-', "_").to_ascii_uppercase()
        )
    }
}

/// A backing service whose connection URL comes from a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::VariantArray)]
pub enum Backend {
    /// Postgres (DATABASE_URL).
    Database,
    /// Redis or Dragonfly (REDIS_URL).
    Cache,
    /// NATS with JetStream (NATS_URL).
    Nats,
}

impl Backend {
    /// Environment variable the runtime reads the URL from.
    pub fn env_name(self) -> &'static str {
        match self {
            Backend::Database => "DATABASE_URL",
            Backend::Cache => "REDIS_URL",
            Backend::Nats => "NATS_URL",
        }
    }

    /// Name of the FaasService spec field that references the Secret.
    pub fn field(self) -> &'static str {
        match self {
            Backend::Database => "spec.database",
            Backend::Cache => "spec.cache",
            Backend::Nats => "spec.nats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_strings() {
        for &c in Component::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(
                serde_json::from_value::<Component>(c.as_str().into()).unwrap(),
                c
            );
            assert_eq!(c.as_str().parse::<Component>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Component::ALL.len(), 9);
        assert_eq!(Component::DataIngestion.as_str(), "data-ingestion");
        assert!("Gateway".parse::<Component>().is_err());
    }

    #[test]
    fn backends_and_urls() {
        assert!(Component::Gateway.needs(Backend::Cache));
        assert!(!Component::Prompt.needs(Backend::Nats));
        assert_eq!(
            Component::PromptGenerator.url_env(),
            "FAAS_PROMPT_GENERATOR_URL"
        );
        assert_eq!(Backend::Nats.env_name(), "NATS_URL");
    }
}
