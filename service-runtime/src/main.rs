use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = faas_runtime::Cli::parse();
    match faas_runtime::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faas-runtime: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
