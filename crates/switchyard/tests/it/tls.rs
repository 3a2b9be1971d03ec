//! HTTPS: `[server.tls]` serves the API over TLS with HSTS on every answer, to a client that
//! trusts the (test-generated) certificate, and to nobody speaking plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use switchyard::Application;
use switchyard::config::{Config, TlsConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;

const HSTS: &str = "max-age=31536000";

struct TlsApp {
    address: SocketAddr,
    cert_pem: String,
    admin_token: String,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: TempDir,
}

impl TlsApp {
    /// A client that trusts only the app's certificate, and finds `localhost` at the app.
    fn client(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).expect("a PEM certificate");
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .resolve("localhost", self.address)
            .build()
            .expect("a TLS client")
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.address.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("stops promptly")
            .expect("the server task")
            .expect("a clean stop");
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as `cert.pem` and `key.pem`.
fn write_certificate(dir: &Path) -> (TlsConfig, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("a certificate");
    let cert_pem = generated.cert.pem();
    let tls = TlsConfig { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&tls.cert, &cert_pem).expect("cert.pem written");
    std::fs::write(&tls.key, generated.signing_key.serialize_pem()).expect("key.pem written");
    (tls, cert_pem)
}

fn config(dir: &Path, tls: TlsConfig) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("a socket address");
    config.database.url = format!("sqlite://{}", dir.join("switchyard.db").display());
    config.server.tls = Some(tls);
    config
}

async fn spawn_tls_app() -> TlsApp {
    spawn_tls_app_with(|_| {}).await
}

async fn spawn_tls_app_with(adjust: impl FnOnce(&mut Config)) -> TlsApp {
    switchyard_adapters::install_crypto_provider();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tls, cert_pem) = write_certificate(dir.path());
    let mut config = config(dir.path(), tls);
    adjust(&mut config);
    let app = Application::build(config).await.expect("the application builds");
    let address = app.local_addr();
    let admin_token = app.first_admin_token().expect("a first admin key").to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    TlsApp { address, cert_pem, admin_token, stop: Some(stop), server, _dir: dir }
}

#[tokio::test]
async fn the_api_is_served_over_https_with_hsts() {
    let app = spawn_tls_app().await;
    let client = app.client();
    let live = client.get(app.url("/health/live")).send().await.expect("an HTTPS answer");
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()), Some(HSTS));

    let events =
        client.get(app.url("/v1/events")).bearer_auth(&app.admin_token).send().await.expect("an answer");
    assert_eq!(events.status(), StatusCode::OK);
    assert!(events.headers().contains_key("strict-transport-security"));
    // Failures carry it too.
    let missing = client.get(app.url("/v1/nowhere")).send().await.expect("an answer");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()), Some(HSTS));
    app.stop().await;
}

#[tokio::test]
async fn plain_http_and_untrusting_clients_get_nothing() {
    let app = spawn_tls_app().await;
    let plain = reqwest::Client::new().get(format!("http://{}/health/live", app.address)).send().await;
    assert!(plain.is_err(), "plain HTTP to the TLS port answered: {plain:?}");
    let untrusting = reqwest::Client::builder().resolve("localhost", app.address).build().expect("a client");
    let refused = untrusting.get(app.url("/health/live")).send().await;
    assert!(refused.is_err(), "a client that does not trust the certificate got an answer");
    // The listener survives both: a trusting client is still served.
    let live = app.client().get(app.url("/health/live")).send().await.expect("an answer");
    assert_eq!(live.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_cut_off_after_the_head_timeout() {
    let app = spawn_tls_app_with(|config| config.server.header_read_timeout_ms = 300).await;
    let mut silent = tokio::net::TcpStream::connect(app.address).await.expect("connects");
    // The header of a handshake record whose 512 bytes never come.
    silent.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.expect("sent");
    let started = Instant::now();
    let mut scratch = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while silent.read(&mut scratch).await.is_ok_and(|read| read > 0) {}
    })
    .await;
    assert!(closed.is_ok(), "still open after {:?}", started.elapsed());
    let live = app.client().get(app.url("/health/live")).send().await.expect("an answer");
    assert_eq!(live.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn plain_http_answers_carry_no_hsts() {
    let app = crate::helpers::spawn_app().await;
    let live = app.client.get(app.url("/health/live")).send().await.expect("an answer");
    assert_eq!(live.status(), StatusCode::OK);
    assert!(!live.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn unreadable_or_mismatched_tls_files_stop_the_start_up_naming_the_setting() {
    switchyard_adapters::install_crypto_provider();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tls, _) = write_certificate(dir.path());
    let missing = TlsConfig { cert: PathBuf::from("/nonexistent/cert.pem"), ..tls.clone() };
    let err = Application::build(config(dir.path(), missing)).await.expect_err("no certificate");
    assert!(format!("{err:#}").contains("server.tls.cert"), "{err:#}");

    let other = tempfile::tempdir().expect("a temporary directory");
    let (other_tls, _) = write_certificate(other.path());
    let mismatched = TlsConfig { key: other_tls.key, ..tls.clone() };
    let err = Application::build(config(dir.path(), mismatched)).await.expect_err("a foreign key");
    assert!(format!("{err:#}").contains("server.tls"), "{err:#}");

    let not_a_key = TlsConfig { key: tls.cert.clone(), ..tls };
    let err = Application::build(config(dir.path(), not_a_key)).await.expect_err("no key");
    assert!(format!("{err:#}").contains("server.tls.key"), "{err:#}");
    assert!(!dir.path().join("switchyard.db").exists(), "nothing was written before TLS was ready");
}
