//! `[server]`: where the HTTP API listens, how long it waits for slow or idle clients, how
//! many connections it holds, and `[server.tls]` for HTTPS.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[server]`: the listener and the limits that keep slow and idle clients from exhausting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A client that has not sent a complete request head this long after connecting (or, on
    /// a kept-alive connection, after the first byte of its next request) is cut off. Covers
    /// the TLS handshake too.
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection with no request for this long is closed; so is one whose client
    /// reads nothing of its answer for this long.
    pub idle_timeout_ms: u64,
    /// A request body that sends nothing for this long (between two chunks) is abandoned: the
    /// answer is a 400 `validation_error` on `body` and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// A request whose answer is not ready this long after its head arrived answers 503
    /// `unavailable`.
    pub request_timeout_ms: u64,
    /// Connections held at once; past it, new ones wait in the kernel's backlog.
    pub max_connections: u32,
    /// A quiet event or delivery stream sends a heartbeat comment this often.
    pub stream_heartbeat_ms: u64,
    /// A stream client that takes no frame for this long while frames wait is sent
    /// `event: lagged` and cut off.
    pub stream_lag_timeout_ms: u64,
    /// The origin providers reach this hub at (`https://hub.example.com`), shown in each
    /// source's `url`; absent: the `Host` of the request that reads the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// HTTPS: `[server.tls]`, absent for plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
            stream_heartbeat_ms: 15_000,
            stream_lag_timeout_ms: 10_000,
            public_url: None,
            tls: None,
        }
    }
}

/// Reports every `[server]` key that must be positive and is not, and a `public_url` that is
/// not an origin.
pub(super) fn validate(
    server: &ServerConfig,
    positive: &mut impl FnMut(&str, u64),
    problems: &mut Vec<String>,
) {
    if let Some(url) = &server.public_url
        && !is_origin(url)
    {
        problems.push(format!(
            "server.public_url: `{url}` must be an http or https origin, such as https://hub.example.com"
        ));
    }
    positive("server.header_read_timeout_ms", server.header_read_timeout_ms);
    positive("server.idle_timeout_ms", server.idle_timeout_ms);
    positive("server.body_read_timeout_ms", server.body_read_timeout_ms);
    positive("server.request_timeout_ms", server.request_timeout_ms);
    positive("server.max_connections", u64::from(server.max_connections));
    positive("server.stream_heartbeat_ms", server.stream_heartbeat_ms);
    positive("server.stream_lag_timeout_ms", server.stream_lag_timeout_ms);
}

fn is_origin(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|host| {
        let host = host.trim_end_matches('/');
        !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@'])
    })
}

/// `[server.tls]`: serve HTTPS (rustls) with this certificate chain and private key, both PEM
/// files, and send HSTS on every answer. Both keys are required; without the section the API
/// is served over plain HTTP (behind a TLS-terminating proxy, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`cert.pem`).
    pub cert: PathBuf,
    /// The private key of the leaf certificate: PKCS#8, PKCS#1 or SEC1 (`key.pem`).
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use figment::Jail;

    use super::*;
    use crate::config::{Config, ConfigError, Overrides};

    /// Runs `test` in a fresh `Jail` (working directory and environment) with no variables set.
    #[expect(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn jailed(test: impl FnOnce(&mut Jail)) {
        Jail::expect_with(|jail| {
            jail.clear_env();
            test(jail);
            Ok(())
        });
    }

    fn write(jail: &Jail, contents: &str) {
        jail.create_file("switchyard.toml", contents).expect("writing switchyard.toml");
    }

    fn load() -> Result<Config, ConfigError> {
        Config::load(None, &Overrides::default())
    }

    #[test]
    fn tls_takes_both_files_from_the_file_or_the_environment() {
        jailed(|jail| {
            assert_eq!(load().expect("loads").server.tls, None, "plain HTTP by default");
            write(jail, "[server.tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
            let tls = TlsConfig { cert: "cert.pem".into(), key: "key.pem".into() };
            assert_eq!(load().expect("loads").server.tls, Some(tls));
            write(jail, "");
            jail.set_env("SWITCHYARD_SERVER__TLS__CERT", "/etc/hub/cert.pem");
            jail.set_env("SWITCHYARD_SERVER__TLS__KEY", "/etc/hub/key.pem");
            let tls = TlsConfig { cert: "/etc/hub/cert.pem".into(), key: "/etc/hub/key.pem".into() };
            assert_eq!(load().expect("loads").server.tls, Some(tls));
        });
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        jailed(|jail| {
            write(jail, "[server.tls]\ncert = \"cert.pem\"\n");
            let problems = load().expect_err("no key").problems().join("\n");
            assert!(problems.contains("key"), "{problems}");
        });
    }

    #[test]
    fn connection_limits_default_and_load_from_the_file_or_the_environment() {
        jailed(|jail| {
            let server = load().expect("loads").server;
            assert_eq!(server.header_read_timeout_ms, 10_000);
            assert_eq!(server.idle_timeout_ms, 60_000);
            assert_eq!(server.body_read_timeout_ms, 10_000);
            assert_eq!(server.request_timeout_ms, 30_000);
            assert_eq!(server.max_connections, 10_000);
            write(jail, "[server]\nheader_read_timeout_ms = 2000\nmax_connections = 50\n");
            jail.set_env("SWITCHYARD_SERVER__IDLE_TIMEOUT_MS", "5000");
            let server = load().expect("loads").server;
            assert_eq!(
                (server.header_read_timeout_ms, server.max_connections, server.idle_timeout_ms),
                (2_000, 50, 5_000)
            );
        });
    }

    #[test]
    fn zero_timeouts_and_a_zero_connection_cap_are_refused_by_name() {
        jailed(|jail| {
            write(
                jail,
                "[server]\nheader_read_timeout_ms = 0\nidle_timeout_ms = 0\nbody_read_timeout_ms = 0\n\
                 request_timeout_ms = 0\nmax_connections = 0\n",
            );
            let problems = load().expect_err("zeros").problems().join("\n");
            for key in [
                "server.header_read_timeout_ms",
                "server.idle_timeout_ms",
                "server.body_read_timeout_ms",
                "server.request_timeout_ms",
                "server.max_connections",
            ] {
                assert!(problems.contains(&format!("{key}: must be greater than 0")), "{key}: {problems}");
            }
        });
    }

    #[test]
    fn a_public_url_must_be_an_origin() {
        jailed(|jail| {
            write(jail, "[server]\npublic_url = \"https://hub.example.com/\"\n");
            assert_eq!(
                load().expect("an origin").server.public_url.as_deref(),
                Some("https://hub.example.com/")
            );
            for bad in ["hub.example.com", "https://hub.example.com/hooks", "ftp://hub", "https://"] {
                write(jail, &format!("[server]\npublic_url = \"{bad}\"\n"));
                let problems = load().expect_err(bad).problems().join("\n");
                assert!(problems.contains("server.public_url"), "{bad}: {problems}");
            }
        });
    }

    #[test]
    fn the_example_file_shows_these_defaults() {
        let example: Config =
            toml::from_str(include_str!("../../../../switchyard.example.toml")).expect("the example parses");
        assert_eq!(example.server, ServerConfig::default());
    }

    #[test]
    fn print_config_shows_the_connection_limits() {
        let printed = Config::default().to_masked_toml().expect("TOML");
        for line in [
            "header_read_timeout_ms = 10000",
            "idle_timeout_ms = 60000",
            "body_read_timeout_ms = 10000",
            "request_timeout_ms = 30000",
            "max_connections = 10000",
        ] {
            assert!(printed.contains(line), "{line} in\n{printed}");
        }
    }
}
