//! `kidp-broker`: parses arguments, sets up logging, and serves (or prints the CRD / writes the OpenAPI spec).
#![forbid(unsafe_code)]

use clap::Parser;
use kidp_broker::config::{Args, Command, LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn,tower=warn,hyper=warn".into());
    match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    match &args.command {
        Some(Command::Crd) => {
            print!("{}", kidp_broker::crd_yaml());
            Ok(())
        }
        Some(Command::Openapi { dir }) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("openapi.json"), kidp_broker::openapi_json())?;
            std::fs::write(dir.join("openapi.yaml"), kidp_broker::openapi_yaml())?;
            println!(
                "wrote {}/openapi.json and {}/openapi.yaml",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        None => kidp_broker::run(args).await,
    }
}
