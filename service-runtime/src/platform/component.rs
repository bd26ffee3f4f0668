//! What a component gives the platform: its routes and OpenAPI document, the state and
//! settings it builds at start, and the background work it runs. The platform serves the
//! list it is handed and knows no component by name.

use std::future::Future;
use std::pin::Pin;

use axum::Router;
use faas_model::{Backend, Component};
use tokio::task::JoinHandle;

use super::AppState;

/// A background task starter (an event consumer and the like): run by `serve` once the
/// routes are built, and by tests that need the work done.
pub type Background = Box<
    dyn FnOnce() -> Pin<Box<dyn Future<Output = anyhow::Result<JoinHandle<()>>> + Send>> + Send,
>;

/// A component built over the platform's state.
pub struct Built {
    /// The component's routes, its own state applied.
    pub router: Router,
    /// Work to start in the background.
    pub background: Vec<Background>,
}

impl Built {
    /// Routes only.
    pub fn routes(router: Router) -> Self {
        Self {
            router,
            background: Vec::new(),
        }
    }
}

/// A component as the platform sees it. Each component module exports one.
pub struct ComponentSpec {
    pub component: Component,
    /// The OpenAPI document of the component's routes.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    /// Routes whose errors take the OpenAI error shape (their clients are OpenAI SDKs).
    pub openai_routes: &'static [&'static str],
    /// Reads the component's settings from the configuration (a wrong value stops
    /// start-up, naming the setting), creates its state and returns its routes.
    pub build: fn(&AppState) -> anyhow::Result<Built>,
}

impl ComponentSpec {
    pub fn name(&self) -> &'static str {
        self.component.as_str()
    }

    /// Whether the component needs `backend` (from the model's table).
    pub fn needs(&self, backend: Backend) -> bool {
        self.component.needs(backend)
    }
}

impl std::fmt::Debug for ComponentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The components built over `state`: every router merged, the background work collected.
pub fn build_all(state: &AppState) -> anyhow::Result<Built> {
    let mut router = Router::new();
    let mut background = Vec::new();
    for spec in state.specs() {
        let built = (spec.build)(state)
            .map_err(|e| anyhow::anyhow!("starting the {} component: {e:#}", spec.name()))?;
        router = router.merge(built.router);
        background.extend(built.background);
    }
    Ok(Built { router, background })
}

/// Starts background work, in order; stops at the first that cannot start.
pub async fn start(background: Vec<Background>) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::with_capacity(background.len());
    for b in background {
        tasks.push(b().await?);
    }
    Ok(tasks)
}

/// The state of a component's routes: the platform's state plus the component's own (its
/// settings and caches). Derefs to the platform's state, and handlers that need nothing
/// of the component's take `State<AppState>` from it.
pub struct ComponentState<C> {
    platform: AppState,
    own: std::sync::Arc<C>,
}

impl<C> ComponentState<C> {
    pub fn new(platform: AppState, own: C) -> Self {
        Self {
            platform,
            own: std::sync::Arc::new(own),
        }
    }

    /// The component's own state.
    pub fn component(&self) -> &C {
        &self.own
    }
}

impl<C> Clone for ComponentState<C> {
    fn clone(&self) -> Self {
        Self {
            platform: self.platform.clone(),
            own: self.own.clone(),
        }
    }
}

impl<C> std::ops::Deref for ComponentState<C> {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.platform
    }
}

impl<C> axum::extract::FromRef<ComponentState<C>> for AppState {
    fn from_ref(state: &ComponentState<C>) -> AppState {
        state.platform.clone()
    }
}
