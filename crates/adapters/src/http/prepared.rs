//! What an attempt needs from a destination's configuration that does not change between
//! attempts: the parsed URL and method, the checked configured headers, the HMAC keys. Derived
//! once per destination version and shared, since each costs parsing and, for the keys,
//! base64 decoding and key setup that would otherwise repeat on every delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::DeliveryError;
use url::Url;

use super::client::{check_host, host_label, request_target};
use super::config::HttpConfig;
use super::signing::SigningKeys;
use crate::ssrf::UrlPolicy;

/// Past this many destinations the cache starts over: a node delivering to more than this
/// many at once only pays the derivation again, and destinations deleted long ago do not
/// stay in memory forever.
const CAPACITY: usize = 4_096;

/// A destination's configuration, ready to send with.
pub(crate) struct Prepared {
    pub(crate) config: HttpConfig,
    /// The URL as the request's target.
    pub(crate) uri: Uri,
    /// `host[:port]`, for messages (never the whole URL, which may carry a secret).
    pub(crate) host: String,
    pub(crate) method: Method,
    /// The configured headers and the secret ones, in that order.
    pub(crate) headers: HeaderMap,
    current_key: SigningKeys,
    with_previous_key: SigningKeys,
}

impl Prepared {
    fn new(destination: &Destination, policy: UrlPolicy) -> Result<Self, DeliveryError> {
        let config = parse_config(destination)?;
        let url = Url::parse(&config.url)
            .map_err(|_| DeliveryError::permanent("the destination's url is not a valid URL"))?;
        check_host(policy, &url)?;
        let host = host_label(&url);
        let uri = request_target(&url)
            .ok_or_else(|| DeliveryError::permanent("the destination's url is not a valid URL"))?;
        let method = Method::from_bytes(config.method.as_bytes())
            .map_err(|_| DeliveryError::permanent("the destination's method is not valid"))?;
        let headers = configured_headers(&config)?;
        // The previous secret's expiry is checked per attempt; both key sets are built here.
        let current_key = SigningKeys::from_secrets(&destination.secrets, None, 0)?;
        let with_previous_key = SigningKeys::from_secrets(&destination.secrets, Some(i64::MAX), i64::MIN)?;
        Ok(Self { config, uri, host, method, headers, current_key, with_previous_key })
    }

    /// The keys that sign at `now_ms` (milliseconds since the Unix epoch): the previous secret
    /// only while its rotation's grace period lasts.
    pub(crate) fn signing_keys(&self, now_ms: i64) -> &SigningKeys {
        match self.config.previous_signing_secret_expires_at {
            Some(expires_at) if expires_at > now_ms => &self.with_previous_key,
            _ => &self.current_key,
        }
    }
}

/// [`Prepared`] configurations by destination, each valid for the version it was made from.
/// Every change to a destination bumps its version; the one write that does not (resealing
/// secrets under a new master key) keeps their plaintext.
#[derive(Default)]
pub(crate) struct PreparedCache {
    entries: Mutex<HashMap<DestinationId, (i64, Arc<Prepared>)>>,
}

impl PreparedCache {
    /// The destination's prepared configuration; an invalid one is an error every time, never
    /// cached.
    pub(crate) fn get(
        &self,
        destination: &Destination,
        policy: UrlPolicy,
    ) -> Result<Arc<Prepared>, DeliveryError> {
        if let Some(prepared) = self.lookup(destination) {
            return Ok(prepared);
        }
        let prepared = Arc::new(Prepared::new(destination, policy)?);
        // A poisoned lock only means a panic elsewhere while it was held: the map is whole.
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(destination.id.clone(), (destination.version, prepared.clone()));
        Ok(prepared)
    }

    fn lookup(&self, destination: &Destination) -> Option<Arc<Prepared>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (version, prepared) = entries.get(&destination.id)?;
        (*version == destination.version).then(|| prepared.clone())
    }
}

/// The stored configuration with its secrets put back, as the type validation produced.
fn parse_config(destination: &Destination) -> Result<HttpConfig, DeliveryError> {
    switchyard_core::json::from_value(destination.full_config()).map_err(|error| {
        // Only the path: the message can quote the value, which may be a secret.
        let at = error.0.first().map_or_else(String::new, |e| e.field.clone());
        DeliveryError::permanent(format!(
            "the destination's configuration is not a valid http configuration (at {at})"
        ))
    })
}

/// The destination's static headers and secret headers as a header map.
fn configured_headers(config: &HttpConfig) -> Result<HeaderMap, DeliveryError> {
    let secret_headers = config.secret_headers.iter().flatten();
    let mut headers = HeaderMap::with_capacity(config.headers.len() + 8);
    for (name, value, secret) in
        config.headers.iter().map(|(n, v)| (n, v, false)).chain(secret_headers.map(|(n, v)| (n, v, true)))
    {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .ok()
            .zip(value.as_str().and_then(|v| HeaderValue::from_str(v).ok()));
        let Some((name, mut value)) = parsed else {
            let kind = if secret { "secret header" } else { "header" };
            return Err(DeliveryError::permanent(format!(
                "the destination's {kind} {name} is not a valid header"
            )));
        };
        // Kept out of debug output, and of HTTP/2 header compression tables.
        value.set_sensitive(secret);
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::destination::DestinationKind;

    fn destination(url: &str, version: i64) -> Destination {
        crate::testing::destination(DestinationKind::Http, json!({ "url": url }), version)
    }

    #[test]
    fn a_new_version_is_prepared_anew_and_an_unchanged_one_is_shared() {
        let cache = PreparedCache::default();
        let first = cache.get(&destination("https://a.invalid/hook", 1), UrlPolicy::AllowPrivate).unwrap();
        let again = cache.get(&destination("https://a.invalid/hook", 1), UrlPolicy::AllowPrivate).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let changed = cache.get(&destination("https://b.invalid/hook", 2), UrlPolicy::AllowPrivate).unwrap();
        assert_eq!(changed.host, "b.invalid");
    }

    #[test]
    fn an_invalid_configuration_is_refused_every_time() {
        let cache = PreparedCache::default();
        for _ in 0..2 {
            let error = cache.get(&destination("not a url", 1), UrlPolicy::AllowPrivate).err().unwrap();
            assert!(!error.retryable);
        }
    }

    #[test]
    fn the_previous_key_signs_only_before_its_expiry() {
        let mut rotated = destination("https://a.invalid/hook", 1);
        rotated.secrets.insert("signing_secret".into(), json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        rotated
            .secrets
            .insert("previous_signing_secret".into(), json!("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX"));
        rotated.config["previous_signing_secret_expires_at"] = json!(2_000);
        let prepared = Prepared::new(&rotated, UrlPolicy::AllowPrivate).unwrap();
        let signatures = |now| prepared.signing_keys(now).header_value("id", 1, b"{}").unwrap();
        assert_eq!(signatures(1_999).split(' ').count(), 2);
        assert_eq!(signatures(2_000).split(' ').count(), 1);
    }
}
