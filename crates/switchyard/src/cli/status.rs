//! `switchyard status`: the integration status report of a running node, fetched over HTTP
//! (the performance figures live in the node's memory, so the database alone cannot give them).

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, ValueEnum};

use super::write_stdout;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The node's base URL; defaults to `http://` and the configured `server.listen`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// An API key or JWT with the `viewer` role or above.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: String,
    /// YAML under `integration_status:` (the default), or the JSON of the report.
    #[arg(long, value_enum, default_value_t = StatusFormat::Yaml)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Yaml,
    Json,
}

pub async fn run(config: &Config, args: StatusArgs) -> anyhow::Result<()> {
    let base = args.url.unwrap_or_else(|| format!("http://{}", config.server.listen));
    let format = match args.format {
        StatusFormat::Yaml => "yaml",
        StatusFormat::Json => "json",
    };
    let url = format!("{}/v1/status?format={format}", base.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&args.token)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body = response.text().await.context("reading the status report")?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        bail!("the node answered {status}: {message}");
    }
    let text = match args.format {
        StatusFormat::Yaml => body,
        StatusFormat::Json => {
            let envelope: serde_json::Value =
                serde_json::from_str(&body).context("the answer is not JSON")?;
            let data = envelope.get("data").ok_or_else(|| anyhow!("the answer has no data"))?;
            format!("{}\n", serde_json::to_string_pretty(data)?)
        }
    };
    write_stdout(&text)
}
