//! The shared runtime of Motadata FaaS: one binary serving any of the
//! platform's components on top of a common platform layer.
//!
//! Dependencies point one way: `platform` ← `shared` ← each component ← `app`.

pub mod agent;
pub mod app;
pub mod cache;
pub mod data_ingestion;
pub mod gateway;
pub mod llmops;
pub mod platform;
pub mod prompt;
pub mod prompt_generator;
pub mod rag;
pub mod shared;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

pub use faas_model::Component;
pub use platform::AppState;

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
        /// Components to serve: a comma-separated list or `all`.
        #[arg(long, env = "FAAS_SERVICE", required = true, value_delimiter = ',',
              value_parser = selection_parser())]
        service: Vec<Selection>,
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

/// One value of `--service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    One(Component),
}

/// The names this build serves, and `all`, as clap's possible values.
fn selection_parser() -> impl TypedValueParser<Value = Selection> {
    PossibleValuesParser::new(app::names().into_iter().chain(["all"])).map(|name| {
        name.parse::<Component>()
            .map_or(Selection::All, Selection::One)
    })
}

/// The components a `--service` list selects, each once, in the order given.
pub fn selected(list: &[Selection]) -> Vec<Component> {
    if list.contains(&Selection::All) {
        return app::COMPONENTS.iter().map(|s| s.component).collect();
    }
    let mut out = Vec::new();
    for s in list {
        if let Selection::One(c) = *s
            && !out.contains(&c)
        {
            out.push(c);
        }
    }
    out
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
        Command::Serve { service, migrate } => serve(config, &selected(&service), migrate).await,
    };
    platform::telemetry::shutdown();
    result
}

async fn serve(
    config: platform::config::Config,
    components: &[Component],
    migrate: bool,
) -> anyhow::Result<()> {
    let specs = app::specs(components)?;
    if matches!(config.auth, platform::config::AuthMode::Disabled) {
        tracing::warn!("authentication is disabled (FAAS_AUTH=disabled): development use only");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "setting FAAS_LISTEN: cannot listen on {}: {e}",
                config.listen
            )
        })?;
    let state = AppState::connect(config, specs).await?;
    if migrate && let Some(db) = &state.db {
        platform::migrate(db).await?;
    }
    let app = app::app(state.clone())?;
    platform::server::serve(state, listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Vec<Component>, clap::Error> {
        let cli = Cli::try_parse_from(["faas-runtime", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve { service, .. } => Ok(selected(&service)),
            Command::Migrate => unreachable!("serve was given"),
        }
    }

    #[test]
    fn service_lists_parse() {
        assert_eq!(
            parse(&["--service", "all"]).unwrap().len(),
            app::COMPONENTS.len()
        );
        assert_eq!(
            parse(&["--service", "cache,prompt,cache"]).unwrap(),
            vec![Component::Cache, Component::Prompt]
        );
        let err = parse(&["--service", "cache,nope"]).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("gateway"), "{err}");
        assert!(parse(&["--service", ""]).is_err());
        assert!(parse(&[]).is_err());
    }
}
