//! The shared runtime of Motadata FaaS: one binary serving any of the
//! platform's components on top of a common platform layer.

pub mod cache;
pub mod gateway;
pub mod llmops;
pub mod platform;
pub mod prompt;

use clap::{Parser, Subcommand};

pub use platform::AppState;
pub use platform::server::app;

/// A component the runtime can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Gateway,
    Cache,
    Prompt,
    Llmops,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Gateway,
        Component::Cache,
        Component::Prompt,
        Component::Llmops,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Cache => "cache",
            Component::Prompt => "prompt",
            Component::Llmops => "llmops",
        }
    }

    /// Parses `a,b,c` or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Component>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                return Ok(Self::ALL.to_vec());
            }
            let c = Self::ALL
                .into_iter()
                .find(|c| c.name() == part)
                .ok_or_else(|| {
                    format!(
                        "unknown component {part:?}; this build serves: {}, or all",
                        Self::ALL.map(|c| c.name()).join(", ")
                    )
                })?;
            if !out.contains(&c) {
                out.push(c);
            }
        }
        if out.is_empty() {
            return Err("no component given".into());
        }
        Ok(out)
    }

    pub fn router(self) -> axum::Router<AppState> {
        match self {
            Component::Gateway => gateway::router(),
            Component::Cache => cache::router(),
            Component::Prompt => prompt::router(),
            Component::Llmops => llmops::router(),
        }
    }

    /// Routes that answer errors in the OpenAI error shape (for OpenAI clients).
    pub fn openai_routes(self) -> &'static [&'static str] {
        match self {
            Component::Gateway => &["/v1/chat/completions", "/v1/embeddings", "/v1/models"],
            _ => &[],
        }
    }

    pub fn openapi(self) -> utoipa::openapi::OpenApi {
        match self {
            Component::Gateway => gateway::openapi(),
            Component::Cache => cache::openapi(),
            Component::Prompt => prompt::openapi(),
            Component::Llmops => llmops::openapi(),
        }
    }
}

/// Starts the background work (event consumers) of the state's components.
pub async fn start_background(
    state: &AppState,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    if state.components.contains(&Component::Llmops) {
        tasks.push(llmops::start_consumer(state).await?);
    }
    Ok(tasks)
}

#[derive(Parser, Debug)]
#[command(
    name = "faas-runtime",
    version,
    about = "The shared runtime of Motadata FaaS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve one or more components over HTTP.
    Serve {
        /// Components to serve: a comma-separated list (gateway, cache, prompt, llmops) or `all`.
        #[arg(long, env = "FAAS_SERVICE")]
        service: String,
        /// Apply the database migrations before serving (default). They run
        /// under a Postgres advisory lock, so replicas starting together are
        /// safe; `--migrate=false` leaves them to `faas-runtime migrate`.
        #[arg(long, env = "FAAS_MIGRATE_ON_START", default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        migrate: bool,
    },
    /// Apply the database migrations and exit.
    Migrate,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = platform::config::Config::from_env()?;
    platform::telemetry::init(&config)?;
    let result = match cli.command {
        Command::Migrate => {
            let pool = platform::connect_db(&config).await?;
            platform::migrate(&pool).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve { service, migrate } => {
            let components =
                Component::parse_list(&service).map_err(|e| anyhow::anyhow!("--service: {e}"))?;
            if matches!(config.auth, platform::config::AuthMode::Disabled) {
                tracing::warn!(
                    "authentication is disabled (FAAS_AUTH=disabled): development use only"
                );
            }
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "setting FAAS_LISTEN: cannot listen on {}: {e}",
                        config.listen
                    )
                })?;
            let state = AppState::connect(config, components).await?;
            if migrate && let Some(db) = &state.db {
                platform::migrate(db).await?;
            }
            platform::server::serve(state, listener).await
        }
    };
    platform::telemetry::shutdown();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_lists_parse() {
        assert_eq!(Component::parse_list("all").unwrap().len(), 4);
        assert_eq!(
            Component::parse_list("cache, prompt,cache").unwrap(),
            vec![Component::Cache, Component::Prompt]
        );
        assert!(
            Component::parse_list("cache,nope")
                .unwrap_err()
                .contains("nope")
        );
        assert!(Component::parse_list("").is_err());
    }
}
