//! The master key that seals secrets at rest (the format is described in
//! `switchyard_store::seal`): where it comes from, its key file, and its rotation.
//!
//! Where the key comes from, the first that applies:
//! 1. `SWITCHYARD_MASTER_KEY`: the base64 of 32 random bytes (the configuration loader leaves
//!    this variable alone; it is read only here).
//! 2. `security.master_key_file`: a file holding that base64 on one line. A relative path is
//!    taken from the working directory, like the database URL's.
//! 3. The default key file, for a SQLite database file: beside it, named like it with `.key`
//!    (`./switchyard.db` → `./switchyard.key`), so a database and its key travel together and
//!    two databases never share a key by accident.
//!
//! When the key file of a SQLite database (2 or 3) does not exist and the database holds no
//! sealed secret yet, a new key is generated into it: created with mode 0600, never
//! overwriting, synced to disk before anything is sealed with it, and logged with its path.
//! If the database does hold sealed secrets, the start fails instead of sealing new ones under
//! a key that cannot open the old. An in-memory database without 1 or 2 gets a random key that
//! lives as long as the process; any other database (PostgreSQL) must be given 1 or 2.
//!
//! At every start, each sealed value's key id must be one the node holds (else the start fails
//! naming the ids), and values stored in clear by a version before sealing are sealed, in one
//! transaction.
//!
//! # Rotation
//!
//! `switchyard keys rotate-master` reseals every secret under a new key in one transaction.
//! With a key file `K`, the new key is first written to `K.new` (0600, synced), then everything
//! is resealed, then `K.new` is renamed over `K` (atomic; the directory is synced). A crash at
//! any point leaves a database every key file can open: before the commit, all values are
//! still under the old key in `K`; after it, under the new key in `K.new`, which every start
//! loads as an opening key while it exists. Running the rotation again finishes it with the
//! key in `K.new`. With `SWITCHYARD_MASTER_KEY`, the new key goes to `--new-key-file`, and the
//! variable must be changed to it before the next start.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use switchyard_store::{Database, DatabaseOptions, KeyId, MasterKey, MasterKeys, Reseal, SecretInventory};
use tracing::{info, warn};

use crate::config::{Config, redact_url};

/// The environment variable holding the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "SWITCHYARD_MASTER_KEY";
/// Appended to a key file's name for the new key of a rotation in progress.
const STAGED_SUFFIX: &str = ".new";

/// Where the current master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// A random key for an in-memory database.
    Process,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env => f.write_str(MASTER_KEY_ENV),
            Self::File(path) => write!(f, "the key file {}", path.display()),
            Self::Process => f.write_str("a key generated for this process (in-memory database)"),
        }
    }
}

/// The master keys to open the configured database with, and what remains to be done once it
/// is open ([`KeyPlan::settle`]).
#[derive(Debug)]
pub struct KeyPlan {
    keys: MasterKeys,
    source: KeySource,
    /// A key file to create with the current key, once the database is known to need it.
    generate: Option<PathBuf>,
}

impl KeyPlan {
    /// Finds the master key as the module docs say. Reads files; writes nothing.
    pub fn resolve(config: &Config) -> anyhow::Result<Self> {
        Self::resolve_with(config, std::env::var(MASTER_KEY_ENV).ok())
    }

    fn resolve_with(config: &Config, env: Option<String>) -> anyhow::Result<Self> {
        if let Some(text) = env {
            let key = MasterKey::from_base64(&text).map_err(|e| anyhow!("{MASTER_KEY_ENV}: {e}"))?;
            return Ok(Self { keys: MasterKeys::new(key), source: KeySource::Env, generate: None });
        }
        let database = DatabaseFile::of(&config.database.url);
        let path = match (&config.security.master_key_file, &database) {
            (Some(path), _) => path.clone(),
            (None, DatabaseFile::Path(db)) => default_key_file(db),
            (None, DatabaseFile::InMemory) => {
                return Ok(Self {
                    keys: MasterKeys::generated(),
                    source: KeySource::Process,
                    generate: None,
                });
            }
            (None, DatabaseFile::Server) => bail!(
                "the database at {} needs a master key for its secrets: set {MASTER_KEY_ENV} or \
                 security.master_key_file",
                redact_url(&config.database.url)
            ),
        };
        match read_key_file(&path)? {
            Some(key) => {
                let keys = with_staged_key(MasterKeys::new(key), &path)?;
                Ok(Self { keys, source: KeySource::File(path), generate: None })
            }
            None => match database {
                DatabaseFile::Path(_) => Ok(Self {
                    keys: MasterKeys::generated(),
                    source: KeySource::File(path.clone()),
                    generate: Some(path),
                }),
                DatabaseFile::InMemory => {
                    Ok(Self { keys: MasterKeys::generated(), source: KeySource::Process, generate: None })
                }
                DatabaseFile::Server => bail!(
                    "security.master_key_file: {} does not exist; a key is generated only for a \
                     SQLite database file",
                    path.display()
                ),
            },
        }
    }

    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// With the database open and migrated: creates the generated key file (only when nothing
    /// is sealed yet), checks that every sealed value's key is held, and seals what an earlier
    /// version stored in clear.
    pub async fn settle(&self, database: &Database) -> anyhow::Result<()> {
        let inventory = database.secret_inventory().await.context("reading how secrets are stored")?;
        let current = self.keys.current();
        if let Some(path) = &self.generate {
            if !inventory.sealed.is_empty() {
                bail!(
                    "the database holds secrets sealed under master key {}, but the key file {} does \
                     not exist: restore it (or set {MASTER_KEY_ENV}) and start again",
                    id_list(inventory.sealed.keys()),
                    path.display()
                );
            }
            match create_key_file(path, current) {
                Ok(()) => info!(
                    key_file = %path.display(),
                    key_id = %current.id(),
                    "generated the master key that seals secrets at rest; back it up: without it \
                     the secrets in the database cannot be read"
                ),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => bail!(
                    "the key file {} was created by another process while this one started; start again",
                    path.display()
                ),
                Err(e) => return Err(e).with_context(|| format!("creating the key file {}", path.display())),
            }
        }
        check_keys(&inventory, &self.keys, &self.source)?;
        if inventory.plaintext > 0 {
            let sealed =
                database.reseal(Reseal::Plaintext).await.context("sealing secrets stored in clear")?;
            info!(count = sealed, key_id = %current.id(), "sealed secrets an earlier version stored in clear");
        }
        Ok(())
    }
}

/// Fails naming the key ids of sealed values that `keys` cannot open.
fn check_keys(inventory: &SecretInventory, keys: &MasterKeys, source: &KeySource) -> anyhow::Result<()> {
    let missing = inventory.missing_keys(keys);
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "secrets in the database are sealed under master key {}, but {source} holds {}: start with \
         the key that sealed them",
        id_list(missing),
        id_list(keys.ids())
    )
}

fn id_list<'a>(ids: impl IntoIterator<Item = &'a KeyId>) -> String {
    ids.into_iter().fold(String::new(), |mut out, id| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = write!(out, "{id}");
        out
    })
}

/// What the database URL says about where its data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DatabaseFile {
    Path(PathBuf),
    InMemory,
    /// A database server (PostgreSQL, or a scheme the store will refuse).
    Server,
}

impl DatabaseFile {
    fn of(url: &str) -> Self {
        let url = url.trim();
        let Some(rest) = url.strip_prefix("sqlite:") else {
            return Self::Server;
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
            return Self::InMemory;
        }
        Self::Path(PathBuf::from(path))
    }
}

/// `switchyard.db` → `switchyard.key`, beside it.
fn default_key_file(database: &Path) -> PathBuf {
    let candidate = database.with_extension("key");
    if candidate == database {
        let mut name = database.as_os_str().to_owned();
        name.push(".key");
        return PathBuf::from(name);
    }
    candidate
}

fn staged_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(STAGED_SUFFIX);
    PathBuf::from(name)
}

/// Adds the key of an interrupted rotation, if one is staged beside `key_file`, as an opening
/// key.
fn with_staged_key(keys: MasterKeys, key_file: &Path) -> anyhow::Result<MasterKeys> {
    let staged = staged_path(key_file);
    let Some(key) = read_key_file(&staged)? else {
        return Ok(keys);
    };
    warn!(
        staged = %staged.display(),
        key_id = %key.id(),
        "a master key rotation was interrupted; its new key opens secrets meanwhile: run \
         `switchyard keys rotate-master` again to finish it"
    );
    Ok(keys.with_opening_key(key))
}

/// The key in `path`, or `None` when there is no such file.
fn read_key_file(path: &Path) -> anyhow::Result<Option<MasterKey>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the key file {}", path.display())),
    };
    let key = MasterKey::from_base64(&text).map_err(|e| anyhow!("the key file {}: {e}", path.display()))?;
    warn_if_readable_by_others(path);
    Ok(Some(key))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(
            key_file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the master key file is readable by other users; `chmod 600` it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Writes `key` to a new file at `path`, readable by its owner only, and syncs it and its
/// directory. Fails with `AlreadyExists` rather than overwrite anything.
fn create_key_file(path: &Path, key: &MasterKey) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", key.export_base64()).as_bytes())?;
    file.sync_all()?;
    sync_parent(path)
}

/// Makes a file's creation or renaming durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What a finished rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub new_key_id: KeyId,
    pub old_key_id: KeyId,
    /// Values resealed (destination secrets and kept responses).
    pub resealed: u64,
    /// Where the new key is now.
    pub key_file: PathBuf,
    /// The old key came from the environment, which must now be changed to the new key.
    pub from_env: bool,
}

/// `keys rotate-master`: see the module docs. `new_key_file` names where the new key is: read
/// from it when it exists, else generated into it.
pub async fn rotate_master(config: &Config, new_key_file: Option<&Path>) -> anyhow::Result<Rotation> {
    let plan = KeyPlan::resolve(config)?;
    let old = plan.keys.current().clone();
    let (new, staged) = match &plan.source {
        KeySource::Process => bail!("an in-memory database has no master key to rotate"),
        KeySource::File(path) if plan.generate.is_some() => {
            bail!("there is no master key to rotate yet: {} does not exist", path.display())
        }
        KeySource::Env => {
            let target = new_key_file.ok_or_else(|| {
                anyhow!(
                    "the master key comes from {MASTER_KEY_ENV}: pass --new-key-file FILE to say where \
                     the new key goes (it is read from FILE when FILE exists, else generated into it)"
                )
            })?;
            (read_or_create_key_file(target)?, None)
        }
        KeySource::File(path) => {
            let staged = staged_path(path);
            let given = new_key_file.map(read_or_create_key_file).transpose()?;
            let new = match (read_key_file(&staged)?, given) {
                (Some(resumed), Some(given)) if resumed != given => bail!(
                    "{} holds the key {} of an interrupted rotation: finish that one first (run again \
                     without --new-key-file), or delete {} if nothing was resealed under it",
                    staged.display(),
                    resumed.id(),
                    staged.display()
                ),
                (Some(resumed), _) => {
                    info!(key_id = %resumed.id(), "finishing an interrupted rotation");
                    resumed
                }
                (None, given) => {
                    let new = given.unwrap_or_else(MasterKey::generate);
                    create_key_file(&staged, &new)
                        .with_context(|| format!("writing the new key to {}", staged.display()))?;
                    new
                }
            };
            (new, Some((staged, path.clone())))
        }
    };
    if new.id() == old.id() {
        bail!("the new master key is the current one ({})", old.id());
    }

    let keys = MasterKeys::new(new.clone()).with_opening_key(old.clone());
    let database = connect(config, keys.clone()).await?;
    let inventory = database.secret_inventory().await.context("reading how secrets are stored")?;
    check_keys(&inventory, &keys, &plan.source)?;
    let resealed = database
        .reseal(Reseal::NotUnderCurrentKey)
        .await
        .context("resealing the secrets under the new key")?;

    let key_file = match staged {
        Some((staged, path)) => {
            fs::rename(&staged, &path)
                .with_context(|| format!("moving {} over {}", staged.display(), path.display()))?;
            sync_parent(&path).with_context(|| format!("syncing the directory of {}", path.display()))?;
            path
        }
        None => new_key_file.map(Path::to_path_buf).unwrap_or_default(),
    };
    Ok(Rotation {
        new_key_id: new.id().clone(),
        old_key_id: old.id().clone(),
        resealed,
        key_file,
        from_env: plan.source == KeySource::Env,
    })
}

fn read_or_create_key_file(path: &Path) -> anyhow::Result<MasterKey> {
    if let Some(key) = read_key_file(path)? {
        return Ok(key);
    }
    let key = MasterKey::generate();
    create_key_file(path, &key).with_context(|| format!("writing the new key to {}", path.display()))?;
    Ok(key)
}

/// Connects to the configured database with `keys` and brings its schema up to date. A
/// current schema is left alone, so a node whose role may not change the schema (see the
/// README's deployment section) starts once `switchyard migrate` has run.
pub async fn connect(config: &Config, master_keys: MasterKeys) -> anyhow::Result<Database> {
    let url = redact_url(&config.database.url);
    let database = &config.database;
    let options = DatabaseOptions {
        url: database.url.clone(),
        max_connections: database.max_connections,
        min_connections: database.min_connections,
        acquire_timeout_ms: database.acquire_timeout_ms,
        statement_timeout_ms: database.statement_timeout_ms,
        master_keys,
    };
    let database = switchyard_store::connect(&options)
        .await
        .with_context(|| format!("cannot connect to the database at {url}"))?;
    let applied = database
        .migrate_if_pending()
        .await
        .with_context(|| format!("cannot migrate the database at {url}"))?;
    if applied > 0 {
        tracing::info!(migrations = applied, "applied the pending migrations");
    }
    Ok(database)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, key_file: Option<&Path>) -> Config {
        let mut config = Config::default();
        config.database.url = url.to_owned();
        config.security.master_key_file = key_file.map(Path::to_path_buf);
        config
    }

    #[test]
    fn database_urls_say_where_the_data_lives() {
        assert_eq!(DatabaseFile::of("sqlite://switchyard.db"), DatabaseFile::Path("switchyard.db".into()));
        assert_eq!(DatabaseFile::of("sqlite:/tmp/a.db?mode=rwc"), DatabaseFile::Path("/tmp/a.db".into()));
        assert_eq!(DatabaseFile::of("sqlite::memory:"), DatabaseFile::InMemory);
        assert_eq!(DatabaseFile::of("sqlite://x.db?mode=memory&cache=shared"), DatabaseFile::InMemory);
        assert_eq!(DatabaseFile::of("postgres://u:p@h/db"), DatabaseFile::Server);
    }

    #[test]
    fn the_default_key_file_sits_beside_the_database() {
        assert_eq!(default_key_file(Path::new("switchyard.db")), PathBuf::from("switchyard.key"));
        assert_eq!(default_key_file(Path::new("/data/hub")), PathBuf::from("/data/hub.key"));
        assert_eq!(default_key_file(Path::new("odd.key")), PathBuf::from("odd.key.key"));
        assert_eq!(staged_path(Path::new("/k/switchyard.key")), PathBuf::from("/k/switchyard.key.new"));
    }

    #[test]
    fn the_environment_wins_and_a_bad_value_is_named_without_echoing_it() {
        let key = MasterKey::generate();
        let plan = KeyPlan::resolve_with(&config("sqlite://x.db", None), Some(key.export_base64())).unwrap();
        assert_eq!(plan.source, KeySource::Env);
        assert_eq!(plan.keys.current(), &key);

        let error = KeyPlan::resolve_with(&config("sqlite://x.db", None), Some("hunter2hunter2".into()))
            .unwrap_err()
            .to_string();
        assert!(error.contains(MASTER_KEY_ENV), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_missing_default_key_file_is_planned_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let plan = KeyPlan::resolve_with(&config(&format!("sqlite://{}", db.display()), None), None).unwrap();
        assert_eq!(plan.generate, Some(dir.path().join("app.key")));
        assert!(!dir.path().join("app.key").exists(), "nothing is written before the database is checked");
    }

    #[test]
    fn server_databases_need_a_key_and_memory_ones_get_one() {
        let error = KeyPlan::resolve_with(&config("postgres://u:hunter2@h/db", None), None).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(MASTER_KEY_ENV) && message.contains("master_key_file"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.key");
        let error = KeyPlan::resolve_with(&config("postgres://h/db", Some(&missing)), None).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");

        let plan = KeyPlan::resolve_with(&config("sqlite::memory:", None), None).unwrap();
        assert_eq!(plan.source, KeySource::Process);
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_created_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = MasterKey::generate();
        create_key_file(&path, &key).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_key_file(&path).unwrap(), Some(key));
        let again = create_key_file(&path, &MasterKey::generate()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);

        fs::write(&path, "not a key").unwrap();
        let error = read_key_file(&path).unwrap_err().to_string();
        assert!(error.contains("k.key") && !error.contains("not a key"), "{error}");
    }

    #[test]
    fn a_staged_key_opens_but_does_not_seal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let (old, new) = (MasterKey::generate(), MasterKey::generate());
        create_key_file(&path, &old).unwrap();
        create_key_file(&staged_path(&path), &new).unwrap();
        let plan = KeyPlan::resolve_with(&config("sqlite://x.db", Some(&path)), None).unwrap();
        assert_eq!(plan.keys.current(), &old);
        assert!(plan.keys.holds(new.id()));
    }
}
