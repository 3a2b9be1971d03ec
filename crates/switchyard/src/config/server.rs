//! `[server.tls]`: HTTPS for the API.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
}
