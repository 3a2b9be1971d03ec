//! `switchyard keys …`: API keys managed straight in the database, and the rotation of the
//! master key that seals secrets at rest.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use switchyard_core::api_key::{ApiKey, Role};
use switchyard_core::id::ApiKeyId;
use switchyard_core::page::{ListRequest, MAX_PER_PAGE};
use switchyard_core::store::Store;
use switchyard_core::time::{format_rfc3339, now_millis};

use super::table::render_table;
use crate::config::Config;
use crate::secrets;
use crate::startup::open_database;

/// Longest key name, as the API allows.
const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print its token, alone, on stdout. The token is not stored and
    /// cannot be shown again.
    Create {
        /// What the key may do; each role includes the ones after it.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// A label to tell keys apart.
        #[arg(long, default_value = "cli", value_parser = parse_name)]
        name: String,
    },
    /// List the active API keys (never their tokens).
    List,
    /// Revoke an API key by id (`key_…`); requests carrying its token are refused from then on.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
    /// Reseal every secret at rest under a new master key, in one transaction, and print the
    /// new key's id.
    ///
    /// With a key file, the new key replaces it once everything is resealed (an interrupted
    /// rotation is finished by running this again). With SWITCHYARD_MASTER_KEY, the new key
    /// goes to --new-key-file, and the variable must be set to it before the next start.
    /// Stop every node first: a running node keeps sealing with the key it started with.
    RotateMaster {
        /// Where the new key is: read from FILE when it exists, else generated into it (mode
        /// 0600). Required when the current key comes from SWITCHYARD_MASTER_KEY.
        #[arg(long, value_name = "FILE")]
        new_key_file: Option<PathBuf>,
    },
}

/// A role as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Publisher,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Publisher => Role::Publisher,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters"));
    }
    Ok(name.to_owned())
}

/// Runs one `keys` command against the configured database, migrating it first.
pub async fn run(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    if let KeysCommand::RotateMaster { new_key_file } = command {
        return rotate_master(config, new_key_file).await;
    }
    let store = open_database(config).await?.store();
    let mut stdout = io::stdout().lock();
    match command {
        KeysCommand::Create { role, name } => {
            let issued = ApiKey::issue(name, role.into(), now_millis());
            store.create_api_key(&issued.key).await.context("storing the new key")?;
            tracing::info!(key_id = %issued.key.id, role = %issued.key.role, "created an API key");
            writeln!(stdout, "{}", issued.token).context("writing to stdout")?;
        }
        KeysCommand::List => {
            let keys = all_active_keys(store.as_ref()).await?;
            stdout.write_all(render_key_table(&keys).as_bytes()).context("writing to stdout")?;
        }
        KeysCommand::Revoke { id } => {
            let id = ApiKeyId::from_trusted(id);
            if !store.revoke_api_key(&id, now_millis()).await.context("revoking the key")? {
                bail!("no active API key has the id `{id}`");
            }
            writeln!(stdout, "revoked {id}").context("writing to stdout")?;
            if store.count_active_api_keys().await.context("counting API keys")? == 0 {
                tracing::warn!("no active API key is left; the next `serve` will create an admin key");
            }
        }
        KeysCommand::RotateMaster { .. } => {}
    }
    stdout.flush().context("writing to stdout")
}

/// `keys rotate-master`: prints the new key id alone on stdout; the rest goes to the log.
async fn rotate_master(config: &Config, new_key_file: Option<PathBuf>) -> anyhow::Result<()> {
    let rotation = secrets::rotate_master(config, new_key_file.as_deref()).await?;
    tracing::info!(
        old_key_id = %rotation.old_key_id,
        new_key_id = %rotation.new_key_id,
        resealed = rotation.resealed,
        key_file = %rotation.key_file.display(),
        "every secret at rest is sealed under the new master key"
    );
    if rotation.from_env {
        tracing::warn!(
            "set {} to the content of {} before the next start: the old key no longer opens the secrets",
            secrets::MASTER_KEY_ENV,
            rotation.key_file.display()
        );
    }
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", rotation.new_key_id).context("writing to stdout")?;
    stdout.flush().context("writing to stdout")
}

async fn all_active_keys(store: &dyn Store) -> anyhow::Result<Vec<ApiKey>> {
    let mut keys = Vec::new();
    for page in 1.. {
        let listing = store
            .list_api_keys(ListRequest::Page { page, per_page: MAX_PER_PAGE })
            .await
            .context("listing API keys")?;
        let fetched = listing.items.len();
        keys.extend(listing.items);
        let total = listing.total.and_then(|t| usize::try_from(t).ok());
        if fetched < MAX_PER_PAGE as usize || total.is_some_and(|t| keys.len() >= t) {
            break;
        }
    }
    Ok(keys)
}

/// The table `keys list` prints: a header, then one aligned row per key.
pub fn render_key_table(keys: &[ApiKey]) -> String {
    const HEADER: [&str; 5] = ["ID", "NAME", "ROLE", "PREFIX", "CREATED"];
    let rows: Vec<[String; 5]> = keys
        .iter()
        .map(|key| {
            [
                key.id.to_string(),
                key.name.clone(),
                key.role.to_string(),
                key.prefix.clone(),
                format_rfc3339(key.created_at),
            ]
        })
        .collect();
    render_table(HEADER, &rows)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse_keys(args: &[&str]) -> Result<KeysCommand, clap::Error> {
        let cli = Cli::try_parse_from(["switchyard", "keys"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Keys(keys) => Ok(keys.command),
            other => panic!("not a keys command: {other:?}"),
        }
    }

    #[test]
    fn create_takes_a_role_and_defaults_the_name() {
        let command = parse_keys(&["create", "--role", "publisher"]).expect("valid");
        let KeysCommand::Create { role, name } = command else { panic!("{command:?}") };
        assert_eq!(Role::from(role), Role::Publisher);
        assert_eq!(name, "cli");
    }

    #[test]
    fn an_unknown_role_is_refused_listing_the_roles() {
        let err = parse_keys(&["create", "--role", "root"]).expect_err("invalid role");
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        let text = err.to_string();
        for role in ["admin", "operator", "publisher", "viewer"] {
            assert!(text.contains(role), "{text}");
        }
    }

    #[test]
    fn a_blank_name_is_refused() {
        let err = parse_keys(&["create", "--role", "viewer", "--name", "  "]).expect_err("blank");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn revoke_takes_an_id_and_the_database_flag_anywhere() {
        let command = parse_keys(&["revoke", "key_123", "--database", "sqlite://x.db"]).expect("valid");
        assert!(matches!(command, KeysCommand::Revoke { ref id } if id == "key_123"), "{command:?}");
    }

    #[test]
    fn rotate_master_takes_an_optional_new_key_file() {
        let command = parse_keys(&["rotate-master"]).expect("valid");
        assert!(matches!(command, KeysCommand::RotateMaster { new_key_file: None }), "{command:?}");
        let command = parse_keys(&["rotate-master", "--new-key-file", "next.key"]).expect("valid");
        let KeysCommand::RotateMaster { new_key_file } = command else { panic!("{command:?}") };
        assert_eq!(new_key_file, Some(PathBuf::from("next.key")));
    }

    #[test]
    fn the_key_table_aligns_its_columns() {
        let mut short = ApiKey::issue("ci".into(), Role::Viewer, 0).key;
        short.prefix = "sy_abcdefg".into();
        let long = ApiKey::issue("deploy pipeline".into(), Role::Admin, 1_700_000_000_000).key;
        let table = render_key_table(&[short.clone(), long.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID"), "{table}");
        let role_column = lines[0].find("ROLE").expect("ROLE header");
        assert_eq!(&lines[1][role_column..role_column + 6], "viewer", "{table}");
        assert_eq!(&lines[2][role_column..role_column + 5], "admin", "{table}");
        assert!(lines[1].contains(short.id.as_str()) && lines[1].contains("1970-01-01T00:00:00.000Z"));
        assert!(lines[2].contains("deploy pipeline"));
        assert!(!table.contains(&long.token_hash), "never the hash");
    }

    #[test]
    fn an_empty_key_table_is_just_the_header() {
        assert_eq!(render_key_table(&[]), "ID  NAME  ROLE  PREFIX  CREATED\n");
    }
}
