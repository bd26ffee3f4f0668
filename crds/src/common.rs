//! Types shared by more than one custom resource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret of the resource's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the resource that references it.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a valid Secret name (lowercase letters, digits, '-' and '.')"))]
    pub name: String,
    /// Key inside the Secret whose value is used.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".to_string()
}

impl SecretKeyRef {
    /// A reference to `key` in the Secret `name`.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
        }
    }
}

/// A named key in a Secret of the resource's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKey {
    /// Name of the Secret, in the same namespace as the resource that references it.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a valid Secret name (lowercase letters, digits, '-' and '.')"))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Schema of a list of `metav1.Condition` kept as a map keyed by `type`, so server-side apply
/// merges conditions one by one.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <Vec<Condition>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// Schema of a free-form JSON object whose content Kubernetes keeps as it is.
pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a value of any JSON type, kept as it is.
pub(crate) fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Condition types and helpers that keep `lastTransitionTime` stable.
pub mod conditions {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    /// The resource does what it was declared for.
    pub const READY: &str = "Ready";
    /// A change is being rolled out.
    pub const PROGRESSING: &str = "Progressing";
    /// Part of the resource is failing.
    pub const DEGRADED: &str = "Degraded";
    /// Every reference (prompt template, tools, service) was found.
    pub const REFERENCES_RESOLVED: &str = "ReferencesResolved";
    /// The state was written to the platform's database.
    pub const SYNCED: &str = "Synced";
    /// The template parsed and its variables are consistent.
    pub const VALID: &str = "Valid";

    /// Builds a condition with the given status (`true` → "True").
    pub fn new(
        type_: &str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation,
            last_transition_time: Time(now),
        }
    }

    /// Puts `next` into `conditions`, keeping the previous `lastTransitionTime` when the status
    /// of that condition type did not change.
    pub fn set(conditions: &mut Vec<Condition>, mut next: Condition) {
        match conditions.iter_mut().find(|c| c.type_ == next.type_) {
            Some(existing) => {
                if existing.status == next.status {
                    next.last_transition_time = existing.last_transition_time.clone();
                }
                *existing = next;
            }
            None => conditions.push(next),
        }
    }

    /// Finds the condition of the given type.
    pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
        conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is present and "True".
    pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
        find(conditions, type_).is_some_and(|c| c.status == "True")
    }
}
