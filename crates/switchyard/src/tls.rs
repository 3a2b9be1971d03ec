//! HTTPS for the API (`[server.tls]`): the rustls configuration read from the PEM files and
//! HSTS on every answer. Handshakes run on each connection's task (`crate::server`), under the
//! request head's deadline.

use std::sync::Arc;

use anyhow::Context as _;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// `Strict-Transport-Security`: browsers use HTTPS only for this host for a year.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");

/// The server side of TLS from the certificate chain and key files. Errors name the setting
/// and the file.
pub(crate) fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    switchyard_adapters::install_crypto_provider();
    let cert_path = tls.cert.display();
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server.tls.cert: cannot read PEM certificates from {cert_path}"))?;
    anyhow::ensure!(!certs.is_empty(), "server.tls.cert: {cert_path} holds no PEM certificate");
    let key = PrivateKeyDer::from_pem_file(&tls.key).with_context(|| {
        format!("server.tls.key: cannot read a PEM private key from {}", tls.key.display())
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls: the certificate and the key do not make a usable pair")?;
    // The API speaks HTTP/1.1 only (hyper's HTTP/1 server in `crate::server`); ALPN says so.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Adds HSTS to an answer; layered on the router when TLS is on.
pub(crate) async fn add_hsts(mut response: Response) -> Response {
    response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    response
}
