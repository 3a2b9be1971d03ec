//! Where configuration comes from, and how its errors read.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::Config;

/// The file read from the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "switchyard.toml";
/// Environment variables with this prefix override the file.
pub const ENV_PREFIX: &str = "SWITCHYARD_";
/// Variables under [`ENV_PREFIX`] that are not configuration keys (reserved for other uses),
/// named without the prefix.
pub const RESERVED_ENV_VARS: &[&str] = &["MASTER_KEY"];
/// Separates nested keys in environment variable names.
const ENV_SEPARATOR: &str = "__";

/// Values given as command-line flags; they override every other source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--listen ADDR` → `server.listen`.
    pub listen: Option<SocketAddr>,
    /// `--database URL` → `database.url`.
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the configuration from its sources (see the module docs) and validates it.
    ///
    /// `file` is the `--config` flag: when given, the file must exist; when not,
    /// [`DEFAULT_FILE`] is read from the working directory if it is there.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let figment = Self::figment(file, overrides)?;
        let config: Config = figment.extract().map_err(|err| ConfigError::from_figment(&figment, err))?;
        config.validate()?;
        Ok(config)
    }

    /// The layered sources, before extraction; for callers that want to inspect them.
    pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Result<Figment, ConfigError> {
        let file = match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError::invalid(vec![format!(
                    "config file `{}` does not exist or is not a file",
                    path.display()
                )]));
            }
            Some(path) => Some(path.to_path_buf()),
            // Only in the working directory, never in its parents (as `Toml::file` would).
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|path| path.is_file()),
        };
        let mut figment = Figment::new();
        if let Some(file) = file {
            check_toml_syntax(&file)?;
            figment = figment.merge(Toml::file_exact(file));
        }
        Ok(figment.merge(EnvVars::new()).merge(overrides.clone()))
    }
}

/// Reads and parses the file once up front, so that a syntax error reads as one line naming the
/// file and the position (figment would report a multi-line snippet without the file name).
fn check_toml_syntax(path: &Path) -> Result<(), ConfigError> {
    let at = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::invalid(vec![format!("config file `{at}`: {err}")]))?;
    let Err(err) = toml::from_str::<toml::Table>(&text) else {
        return Ok(());
    };
    let position = err
        .span()
        .map(|span| {
            let before = text.get(..span.start).unwrap_or(&text);
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
            format!(":{line}:{column}")
        })
        .unwrap_or_default();
    let message = err.message().trim().replace('\n', "; ");
    Err(ConfigError::invalid(vec![format!("config file `{at}{position}`: invalid TOML: {message}")]))
}

/// `SWITCHYARD_*` variables, named back in full when an error points at one.
struct EnvVars(Env);

impl EnvVars {
    fn new() -> Self {
        Self(Env::prefixed(ENV_PREFIX).split(ENV_SEPARATOR).ignore(RESERVED_ENV_VARS))
    }
}

fn env_var_name<K: AsRef<str>>(keys: &[K]) -> String {
    let path: Vec<String> = keys.iter().map(|key| key.as_ref().to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", path.join(ENV_SEPARATOR))
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_METADATA).interpolater(|_: &Profile, keys: &[&str]| env_var_name(keys))
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        self.0.data()
    }
}

const ENV_METADATA: &str = "environment variable";
const FLAGS_METADATA: &str = "command-line flag";

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(FLAGS_METADATA)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut root = Dict::new();
        let mut set = |section: &str, key: &str, value: String| {
            if let Value::Dict(_, dict) =
                root.entry(section.to_owned()).or_insert_with(|| Value::from(Dict::new()))
            {
                dict.insert(key.to_owned(), Value::from(value));
            }
        };
        if let Some(listen) = self.listen {
            set("server", "listen", listen.to_string());
        }
        if let Some(url) = &self.database_url {
            set("database", "url", url.clone());
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Configuration that cannot be used: one line per problem, each naming the key (or the
/// environment variable) at fault and where it came from.
#[derive(Debug)]
pub struct ConfigError {
    problems: Vec<String>,
    source: Option<Box<figment::Error>>,
}

impl ConfigError {
    pub(crate) fn invalid(problems: Vec<String>) -> Self {
        Self { problems, source: None }
    }

    fn from_figment(figment: &Figment, error: figment::Error) -> Self {
        let problems = error.clone().into_iter().map(|err| describe(figment, &err)).collect();
        Self { problems, source: Some(Box::new(error)) }
    }

    /// One human-readable line per problem.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|err| err as &(dyn std::error::Error + 'static))
    }
}

/// One line for one figment error: `<where>: <what>`.
fn describe(figment: &Figment, error: &figment::Error) -> String {
    let mut path = error.path.clone();
    let what = match &error.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key; expected one of: {}", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value `{found}`; expected one of: {}", expected.join(", "))
        }
        kind => kind.to_string(),
    };
    let key = path.join(".");
    if key.is_empty() {
        return what;
    }
    let metadata = figment.find_metadata(&key).or(error.metadata.as_ref());
    match metadata {
        Some(md) if md.name == ENV_METADATA => {
            format!("environment variable {} (key `{key}`): {what}", env_var_name(&path))
        }
        Some(md) if md.name == FLAGS_METADATA => format!("command-line flag for `{key}`: {what}"),
        Some(Metadata { source: Some(Source::File(file)), .. }) => {
            format!("`{key}` in {}: {what}", file.display())
        }
        _ => format!("`{key}`: {what}"),
    }
}
