//! What the gateway holds between requests: its settings, the routes and limit decisions
//! it has resolved, and the shared price cache.

use std::sync::Arc;

use super::limits::LimitCache;
use super::providers::RouteCache;
use super::settings::Settings;
use crate::platform::AppState;
use crate::platform::component::ComponentState;
use crate::shared::pricing::Prices;

/// The state of the gateway's routes.
pub type GatewayState = ComponentState<Gateway>;

pub struct Gateway {
    pub settings: Settings,
    pub routes: RouteCache,
    pub limits: LimitCache,
    /// Shared with llmops when both run in one process, so a price it changes applies here
    /// at once.
    pub prices: Arc<Prices>,
}

impl Gateway {
    pub fn state(platform: AppState, settings: Settings) -> GatewayState {
        let prices = platform.shared::<Prices>();
        ComponentState::new(
            platform,
            Gateway {
                settings,
                routes: RouteCache::default(),
                limits: LimitCache::default(),
                prices,
            },
        )
    }
}
