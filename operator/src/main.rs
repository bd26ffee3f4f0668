use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = faas_operator::config::Config::parse();
    let _telemetry = faas_operator::telemetry::init(&config.log_level, config.log_format)?;
    faas_operator::run::run(config).await
}
