//! The components this build serves. This is the only file that lists them: adding a
//! component is its directory plus one line here.

use faas_model::Component;

use crate::platform::{AppState, Built, ComponentSpec};

/// Every component this build serves, in the order of the documentation.
pub static COMPONENTS: &[&ComponentSpec] = &[
    &crate::gateway::SPEC,
    &crate::cache::SPEC,
    &crate::prompt::SPEC,
    &crate::llmops::SPEC,
    &crate::rag::SPEC,
    &crate::data_ingestion::SPEC,
    &crate::agent::SPEC,
    &crate::prompt_generator::SPEC,
];

/// The served component of that name.
pub fn spec(component: Component) -> Option<&'static ComponentSpec> {
    COMPONENTS
        .iter()
        .copied()
        .find(|s| s.component == component)
}

/// The specs of `components`, in the order given; an error names a component this build
/// does not serve.
pub fn specs(components: &[Component]) -> anyhow::Result<Vec<&'static ComponentSpec>> {
    components
        .iter()
        .map(|&c| {
            spec(c).ok_or_else(|| {
                anyhow::anyhow!(
                    "the component {c} is not served by this build; it serves: {}",
                    names().join(", ")
                )
            })
        })
        .collect()
}

/// Names of the served components.
pub fn names() -> Vec<&'static str> {
    COMPONENTS.iter().map(|s| s.name()).collect()
}

/// The whole application of `state`'s components (their routes inside the platform's),
/// and their background work, not yet started.
pub fn app(state: AppState) -> anyhow::Result<Built> {
    let built = crate::platform::component::build_all(&state)?;
    Ok(Built {
        router: crate::platform::server::app(state, built.router),
        background: built.background,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_components_served_are_the_ones_the_model_says_are() {
        let served: Vec<Component> = COMPONENTS.iter().map(|s| s.component).collect();
        let said: Vec<Component> = Component::ALL
            .iter()
            .copied()
            .filter(|c| c.served())
            .collect();
        assert_eq!(served, said);
    }
}
