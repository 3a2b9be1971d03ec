//! Wiring: from a [`Config`] to a running node.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use switchyard_adapters::{AdapterSettings, UrlPolicy};
use switchyard_api::{ApiSettings, ApiState};
use switchyard_core::api_key::{ApiKey, Role};
use switchyard_core::store::Store;
use switchyard_core::time::{Millis, now_millis};
use switchyard_core::transport::Transports;
use switchyard_engine::metrics::PoolUsage;
use switchyard_engine::shutdown::{Shutdown, ShutdownTrigger};
use switchyard_engine::{Engine, EngineSettings};
use switchyard_store::Database;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Config, redact_url};
use crate::server::{self, ConnectionLimits, ServerSettings};
use crate::tls;

/// The name given to the admin key created on first run.
pub const FIRST_ADMIN_KEY_NAME: &str = "first-run admin";

/// A node ready to serve: database connected and migrated, listener bound, routes built.
///
/// `main` builds one and runs it until a signal arrives; tests build one on port 0 and stop it
/// with [`Application::run_until`].
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `[server.tls]`: HTTPS with this configuration; plain HTTP when `None`.
    tls: Option<Arc<rustls::ServerConfig>>,
    server: ServerSettings,
    router: Router,
    engine: Engine,
    /// The stop of the server, the engine and the API's streams.
    trigger: ShutdownTrigger,
    stopping: Shutdown,
    /// Closed once the engine has stopped.
    transports: Arc<Transports>,
    store: Arc<dyn Store>,
    /// The connected database behind `store`, for tests that reach past the store's traits.
    database: Database,
    backend: &'static str,
    first_admin_token: Option<String>,
}

impl Application {
    /// Validates `config`, binds `server.listen`, connects to the database and applies its
    /// migrations, and creates an `admin` API key when no active key exists (its token is kept
    /// for [`Application::first_admin_token`], to be shown once).
    ///
    /// The listener is bound before anything is written, so a busy port fails the start-up
    /// without creating a key whose token nobody would see.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        check_open_files(&config);
        let api_settings = api_settings(&config)?;
        let listen = config.server.listen;
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let tls = config.server.tls.as_ref().map(tls::server_config).transpose()?;

        let database = open_database(&config).await?;
        let store = database.store();
        let first_admin_token = ensure_admin_key(store.as_ref()).await?;
        if config.operational.enabled {
            switchyard_engine::operational::register_event_types(store.as_ref())
                .await
                .context("registering the operational event types")?;
        }

        let transports = Arc::new(switchyard_adapters::transports(adapter_settings(&config)));
        let engine = Engine::new(Arc::clone(&store), Arc::clone(&transports), engine_settings(&config))
            .with_pullers(switchyard_adapters::pullers());
        let pools = database.clone();
        engine.metrics().set_pool_probe(move || {
            pools
                .pool_usage()
                .into_iter()
                .map(|u| PoolUsage { pool: u.pool, size: u.size, idle: u.idle, max: u.max })
                .collect()
        });
        // Created here rather than when serving starts, so the API's streams end with the server.
        let (trigger, stopping) = switchyard_engine::shutdown::channel();
        let state = ApiState::new(Arc::clone(&store), engine.control(), api_settings, stopping.clone());
        let router = switchyard_api::router(state);
        Ok(Self {
            listener,
            local_addr,
            tls,
            server: server_settings(&config),
            router,
            engine,
            trigger,
            stopping,
            transports,
            store,
            backend: database.backend(),
            database,
            first_admin_token,
        })
    }

    /// The address the listener is bound to (the real port when `server.listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The token of the admin key created by [`Application::build`], if it created one.
    pub fn first_admin_token(&self) -> Option<&str> {
        self.first_admin_token.as_deref()
    }

    /// The store the API serves from.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The database the store is on. For tests that act on it past the store's traits (e.g.
    /// capping the SQLite writer's pages to play a full disk); nothing else calls it.
    #[doc(hidden)]
    pub fn database(&self) -> Database {
        self.database.clone()
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting connections and lets the requests
    /// in flight finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves and delivers until `shutdown` completes, then stops gracefully: the listener stops
    /// accepting while requests in flight finish, and the engine stops claiming while
    /// deliveries in flight get `engine.shutdown_grace_ms` to finish.
    pub async fn run_until<F>(self, shutdown: F) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        info!(address = %self.local_addr, backend = self.backend, node = self.engine.node_id(), "listening on {scheme}://{}", self.local_addr);
        let (trigger, stopping) = (self.trigger, self.stopping);
        let engine = tokio::spawn(self.engine.run(stopping.clone()));
        let router = match self.tls {
            Some(_) => self.router.layer(axum::middleware::map_response(tls::add_hsts)),
            None => self.router,
        };
        let server = server::serve(self.listener, self.tls, router, self.server, stopping);
        let signal = async move {
            shutdown.await;
            info!("stopping: no new requests or claims; finishing work in flight");
            trigger.trigger();
            trigger
        };
        let ((), _trigger) = tokio::join!(server, signal);
        engine.await.context("the delivery engine failed")?;
        // The engine has stopped: what its last attempts left held in memory is written now, or
        // it would be lost with the process.
        if let Err(error) = self.store.write_held_outcomes(Millis::MAX).await {
            warn!(%error, "writing held flow outcomes failed; up to a second of them is lost");
        }
        self.transports.close().await;
        info!("stopped");
        Ok(())
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend)
            .field("first_admin_token", &self.first_admin_token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Connects to the configured database, brings its schema up to date, and settles its secrets
/// at rest: loads the master key (generating it on first run of the embedded default), checks
/// it opens every sealed secret, and seals any left in clear (see [`crate::secrets`]).
pub async fn open_database(config: &Config) -> anyhow::Result<Database> {
    let keys = crate::secrets::KeyPlan::resolve(config)?;
    let database = crate::secrets::connect(config, keys.keys().clone()).await?;
    keys.settle(&database).await?;
    let url = redact_url(&config.database.url);
    info!(backend = database.backend(), database = %url, key_id = %keys.keys().current().id(), "database ready");
    Ok(database)
}

/// Creates an `admin` key when the store holds no active key; returns its token.
async fn ensure_admin_key(store: &dyn Store) -> anyhow::Result<Option<String>> {
    if store.count_active_api_keys().await.context("counting API keys")? > 0 {
        return Ok(None);
    }
    let issued = ApiKey::issue(FIRST_ADMIN_KEY_NAME.to_owned(), Role::Admin, now_millis());
    store.create_api_key(&issued.key).await.context("creating the first admin API key")?;
    info!(key_id = %issued.key.id, "no active API key: created an admin key");
    Ok(Some(issued.token))
}

/// Raises the soft limit of open files, and warns when the connection cap and everything else
/// the node holds open would not fit under it.
fn check_open_files(config: &Config) {
    let Some(limit) = server::raise_open_files_limit() else { return };
    let others =
        server::descriptors_beside_connections(config.database.max_connections, config.engine.concurrency);
    let needed = u64::from(config.server.max_connections) + others;
    if needed > limit {
        tracing::warn!(
            max_connections = config.server.max_connections,
            needed,
            limit,
            "server.max_connections plus about {others} descriptors for the database and deliveries \
             need {needed} open files, over this process's limit of {limit}: raise `ulimit -n` (or \
             LimitNOFILE) or lower server.max_connections, or connections will fail to open"
        );
    }
}

fn server_settings(config: &Config) -> ServerSettings {
    let server = &config.server;
    ServerSettings {
        limits: ConnectionLimits {
            header_read: Duration::from_millis(server.header_read_timeout_ms),
            idle: Duration::from_millis(server.idle_timeout_ms),
        },
        max_connections: server.max_connections,
    }
}

fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        node_id: config.engine.node_id.clone(),
        concurrency: config.engine.concurrency,
        max_in_flight_per_destination: config.engine.max_in_flight_per_destination,
        lease_ms: config.engine.lease_ms,
        max_unfinished_attempts: config.engine.max_unfinished_attempts,
        batch_size: config.engine.batch_size,
        fast_queue: config.engine.fast_queue,
        poll_interval_ms: config.engine.poll_interval_ms,
        shutdown_grace_ms: config.engine.shutdown_grace_ms,
        retention_days: config.retention.days,
        audit_retention_days: config.retention.audit_days,
        // A transform's output is a body like a payload, under the same limit; what a run
        // may allocate on the way scales with it.
        jq: switchyard_engine::jq::JqLimits::for_payloads(config.limits.max_payload_bytes),
        require_registered_types: config.ingest.require_registered_types,
        max_payload_bytes: config.limits.max_payload_bytes,
        operational_events: config.operational.enabled,
        dead_letter_alert_window_ms: config.operational.dead_letter_window_ms,
        ..EngineSettings::default()
    }
}

/// Reads the JWKS file, if any, so it runs before anything is written.
fn api_settings(config: &Config) -> anyhow::Result<ApiSettings> {
    use switchyard_api::jwt::JwtSettings;
    use switchyard_api::rate_limit::{RateLimitSettings, RateQuota};

    let jwt = &config.auth.jwt;
    let jwt = match jwt.keys().map_err(anyhow::Error::msg)? {
        None => None,
        Some(keys) => {
            for skipped in keys.skipped() {
                tracing::warn!("auth.jwt.jwks_file: {skipped}");
            }
            if jwt.audience.is_none() {
                tracing::warn!(
                    "auth.jwt.audience is not set: tokens the issuer made for other services pass"
                );
            }
            Some(JwtSettings {
                keys,
                issuer: jwt.issuer.clone(),
                audience: jwt.audience.clone(),
                role_claim: jwt.role_claim.clone(),
                leeway_ms: jwt.leeway_ms,
            })
        }
    };
    let limits = &config.rate_limit;
    let quota = |(per_second, burst)| RateQuota { per_second, burst };
    let rate_limit = RateLimitSettings {
        default: quota((limits.per_second, limits.burst)),
        roles: Role::ALL.into_iter().map(|role| (role, quota(limits.for_role(role)))).collect(),
    };
    Ok(ApiSettings {
        max_payload_bytes: config.limits.max_payload_bytes,
        max_body_bytes: config.limits.max_body_bytes,
        require_registered_types: config.ingest.require_registered_types,
        jwt,
        rate_limit,
        metrics_require_key: config.auth.metrics_require_key,
        request_timeout: Duration::from_millis(config.server.request_timeout_ms),
        body_read_timeout: Duration::from_millis(config.server.body_read_timeout_ms),
        public_url: config.server.public_url.as_ref().map(|url| url.trim_end_matches('/').to_owned()),
        https: config.server.tls.is_some(),
        stream_heartbeat: Duration::from_millis(config.server.stream_heartbeat_ms),
        stream_lag_timeout: Duration::from_millis(config.server.stream_lag_timeout_ms),
    })
}

fn adapter_settings(config: &Config) -> AdapterSettings {
    AdapterSettings {
        url_policy: UrlPolicy::from_setting(config.security.allow_private_destinations),
        ..AdapterSettings::default()
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => info!("SIGINT received; finishing requests in flight"),
        () = terminate => info!("SIGTERM received; finishing requests in flight"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config_for(db: &std::path::Path) -> Config {
        let mut config = Config::default();
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.database.url = format!("sqlite://{}", db.display());
        config
    }

    #[tokio::test]
    async fn builds_serves_and_stops_on_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_for(&dir.path().join("app.db"));

        let app = Application::build(config.clone()).await.expect("first build");
        let token = app.first_admin_token().expect("a first admin key").to_owned();
        assert!(token.starts_with("sy_"));
        assert_ne!(app.local_addr().port(), 0, "the real port is reported");
        assert_eq!(app.store().count_active_api_keys().await.expect("count"), 1);

        let address = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let answer = reqwest::get(format!("http://{address}/health/live")).await.expect("request");
        assert!(answer.status().is_success(), "{}", answer.status());

        stop.send(()).expect("server still running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("stops promptly")
            .expect("task")
            .expect("clean stop");

        let again = Application::build(config).await.expect("second build");
        assert_eq!(again.first_admin_token(), None, "an active key exists already");
    }

    #[tokio::test]
    async fn an_invalid_config_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config_for(&dir.path().join("app.db"));
        config.limits.max_body_bytes = 0;
        let err = Application::build(config).await.expect_err("invalid");
        assert!(err.to_string().contains("limits.max_body_bytes"), "{err:#}");
        assert!(!dir.path().join("app.db").exists(), "no database was created");
    }
}
