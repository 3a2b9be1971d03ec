//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `{webhook-id}.{webhook-timestamp}.{body}`, one signature per active secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde_json::{Map, Value};
use switchyard_core::destination::PREVIOUS_SIGNING_SECRET;
use switchyard_core::transport::DeliveryError;

use super::config::signing_key_bytes;

const SECRET: &str = "signing_secret";

/// The HMAC keys a delivery is signed with: the current secret, plus the previous one while a
/// rotation's grace period lasts, so a receiver still holding the old secret keeps verifying.
pub(crate) struct SigningKeys(Vec<hmac::Key>);

impl SigningKeys {
    /// Reads the keys from a destination's secrets. `previous_expires_at` and `now_ms` are
    /// milliseconds since the Unix epoch.
    pub(crate) fn from_secrets(
        secrets: &Map<String, Value>,
        previous_expires_at: Option<i64>,
        now_ms: i64,
    ) -> Result<Self, DeliveryError> {
        let previous_active = previous_expires_at.is_some_and(|at| at > now_ms);
        let mut keys = Vec::with_capacity(2);
        for (path, active) in [(SECRET, true), (PREVIOUS_SIGNING_SECRET, previous_active)] {
            let Some(secret) = secrets.get(path).filter(|_| active) else {
                continue;
            };
            // Validation only stores well-formed secrets; one that is not must not turn into an
            // unsigned delivery, and retrying cannot repair it.
            let bytes = secret.as_str().and_then(signing_key_bytes).ok_or_else(|| {
                DeliveryError::permanent(format!("the destination's {path} is not a valid whsec_ secret"))
            })?;
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        }
        Ok(Self(keys))
    }

    /// The `webhook-signature` value, or `None` when the destination has no secret.
    pub(crate) fn header_value(&self, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let signatures: Vec<String> = self.0.iter().map(|key| sign(key, id, timestamp, body)).collect();
        Some(signatures.join(" "))
    }
}

/// One `v1,<base64>` signature.
fn sign(key: &hmac::Key, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secrets(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test secrets are an object"),
        }
    }

    /// The vector published with the Standard Webhooks reference libraries.
    #[test]
    fn the_published_test_vector_matches() {
        let keys = SigningKeys::from_secrets(
            &secrets(json!({"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})),
            None,
            0,
        )
        .unwrap();
        let header =
            keys.header_value("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(header.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn the_previous_secret_signs_only_until_it_expires() {
        let both = secrets(json!({
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "previous_signing_secret": "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX",
        }));
        let during = SigningKeys::from_secrets(&both, Some(2_000), 1_999).unwrap();
        let header = during.header_value("id", 1, b"{}").unwrap();
        assert_eq!(header.split(' ').count(), 2);
        let after = SigningKeys::from_secrets(&both, Some(2_000), 2_000).unwrap();
        let header_after = after.header_value("id", 1, b"{}").unwrap();
        assert_eq!(header_after.split(' ').count(), 1);
        assert!(header.starts_with(&header_after), "the current secret signs first");
    }

    #[test]
    fn no_secret_means_no_signature_and_a_bad_one_is_an_error() {
        let none = SigningKeys::from_secrets(&Map::new(), None, 0).unwrap();
        assert_eq!(none.header_value("id", 1, b"{}"), None);
        let bad = SigningKeys::from_secrets(&secrets(json!({"signing_secret": "not-a-secret"})), None, 0);
        let err = bad.err().unwrap();
        assert!(!err.retryable);
        assert!(!err.message.contains("not-a-secret"));
    }
}
