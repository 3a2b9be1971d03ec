//! JWT bearer tokens beside API keys: verified against an HS256 secret or the RS256 / ES256
//! public keys of a JWKS, then checked for `exp`, `nbf`, `iss`, `aud`, `sub` and a role.
//!
//! The algorithm a token may use is fixed by the key that verifies it, never by the token:
//! `hs256_secret` accepts HS256 only, a JWKS key accepts the one algorithm of its kind (RS256 for
//! `kty: RSA`, ES256 for `kty: EC` on P-256). So `alg: none`, and a token that names HS256 to
//! have an RSA public key used as an HMAC secret (algorithm confusion), are refused before any
//! signature check. Refusals say which check failed and never echo the token or its claims.

mod keys;

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Validation;
use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_core::api_key::Role;
use switchyard_core::time::{Millis, format_rfc3339, now_millis};

pub use keys::{JwtKeyError, JwtKeys, MIN_HS256_SECRET_BYTES, MIN_RSA_BITS};

/// What JWT verification needs from the configuration.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub keys: JwtKeys,
    /// When set, a token's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must be it or an array holding it.
    pub audience: Option<String>,
    /// The top-level claim holding the role: a string, or an array whose strongest known role
    /// counts.
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_ms: u64,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    pub issuer: Option<String>,
    pub subject: String,
    pub role: Role,
}

/// Why a token was refused; each is answered 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the token is not a signed JWT (three base64url parts separated by dots)")]
    Malformed,
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    #[error("the token is signed with `{alg}`, but {key} accepts {expected} only")]
    WrongAlgorithm { alg: String, expected: &'static str, key: String },
    #[error("the token's header lists critical extensions (crit), none of which are supported")]
    CriticalExtension,
    #[error("the token's kid names no key of the configured JWKS")]
    UnknownKid,
    #[error("the token has no kid, and the configured JWKS holds several keys")]
    MissingKid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token's `{0}` claim has the wrong type")]
    InvalidClaim(&'static str),
    #[error("the token expired at {0}")]
    Expired(String),
    #[error("the token is not valid before {0}")]
    NotYetValid(String),
    #[error("the token's issuer is not the configured one")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token carries no valid role in its `{0}` claim (one of admin, operator, publisher, viewer)")]
    NoRole(String),
}

/// The header members that decide how a token is verified.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

impl JwtSettings {
    /// Verifies `token` now; see the module docs for what is checked.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        self.verify_at(token, now_millis())
    }

    fn verify_at(&self, token: &str, now: Millis) -> Result<JwtIdentity, JwtError> {
        let header = read_header(token)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::Unsigned);
        }
        if header.crit.is_some() {
            return Err(JwtError::CriticalExtension);
        }
        let (key, alg) = self.keys.select(&header)?;
        let mut validation = Validation::new(alg);
        // Claims are checked below, with millisecond leeway and messages of our own.
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                _ => JwtError::Malformed,
            })?
            .claims;
        self.check_claims(&claims, now)
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: Millis) -> Result<JwtIdentity, JwtError> {
        let leeway = i64::try_from(self.leeway_ms).unwrap_or(i64::MAX);
        let exp = numeric_date(claims, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired(format_rfc3339(exp)));
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid(format_rfc3339(nbf)));
        }
        let issuer = match claims.get("iss") {
            None => None,
            Some(Value::String(iss)) => Some(iss.clone()),
            Some(_) => return Err(JwtError::InvalidClaim("iss")),
        };
        if let Some(wanted) = &self.issuer
            && issuer.as_deref() != Some(wanted.as_str())
        {
            return Err(match issuer {
                None => JwtError::MissingClaim("iss"),
                Some(_) => JwtError::WrongIssuer,
            });
        }
        if let Some(wanted) = &self.audience {
            let matches = match claims.get("aud") {
                None => return Err(JwtError::MissingClaim("aud")),
                Some(Value::String(aud)) => aud == wanted,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(wanted.as_str())),
                Some(_) => return Err(JwtError::InvalidClaim("aud")),
            };
            if !matches {
                return Err(JwtError::WrongAudience);
            }
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            Some(Value::String(_)) | None => return Err(JwtError::MissingClaim("sub")),
            Some(_) => return Err(JwtError::InvalidClaim("sub")),
        };
        let role = match claims.get(&self.role_claim) {
            Some(Value::String(role)) => Role::parse(role),
            Some(Value::Array(roles)) => roles.iter().filter_map(Value::as_str).filter_map(Role::parse).max(),
            _ => None,
        }
        .ok_or_else(|| JwtError::NoRole(sanitize(&self.role_claim)))?;
        Ok(JwtIdentity { issuer, subject, role })
    }
}

fn read_header(token: &str) -> Result<TokenHeader, JwtError> {
    let parts = token.split('.').count();
    if parts == 5 {
        return Err(JwtError::Encrypted);
    }
    if parts != 3 {
        return Err(JwtError::Malformed);
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// A NumericDate claim (seconds since the epoch, possibly fractional) in milliseconds.
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<Millis>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => {
            let seconds = value.as_f64().filter(|s| s.is_finite()).ok_or(JwtError::InvalidClaim(name))?;
            // Clamped far beyond any real date; `as` saturates.
            Ok(Some((seconds * 1000.0).clamp(-1e17, 1e17) as Millis))
        }
    }
}

/// At most 32 visible ASCII characters of a value from the token, for error messages.
fn sanitize(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic()).take(32).collect()
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: Millis = 1_800_000_000_000;

    fn settings() -> JwtSettings {
        JwtSettings {
            keys: JwtKeys::hs256(SECRET).expect("a long enough secret"),
            issuer: Some("https://idp.example".into()),
            audience: Some("switchyard".into()),
            role_claim: "role".into(),
            leeway_ms: 30_000,
        }
    }

    /// Any header (even a lying one) over `claims`, with an HS256 signature by `secret`.
    fn sign(header: Value, claims: Value, secret: &[u8]) -> String {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let key = jsonwebtoken::EncodingKey::from_secret(secret);
        let signature =
            jsonwebtoken::crypto::sign(format!("{head}.{body}").as_bytes(), &key, Algorithm::HS256)
                .expect("HS256 signs");
        format!("{head}.{body}.{signature}")
    }

    fn claims() -> Value {
        json!({"sub": "alice", "iss": "https://idp.example", "aud": "switchyard", "role": "publisher",
               "exp": NOW / 1000 + 600, "nbf": NOW / 1000 - 60})
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        if value.is_null() {
            claims.as_object_mut().map(|c| c.remove(key));
        } else {
            claims[key] = value;
        }
        claims
    }

    fn verify(token: &str) -> Result<JwtIdentity, JwtError> {
        settings().verify_at(token, NOW)
    }

    #[test]
    fn a_valid_token_yields_its_subject_issuer_and_role() {
        let token = sign(json!({"alg": "HS256", "typ": "JWT"}), claims(), SECRET);
        let identity = verify(&token).expect("valid");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(identity.role, Role::Publisher);
    }

    #[test]
    fn each_failed_check_is_named() {
        let hs = |claims: Value| sign(json!({"alg": "HS256"}), claims, SECRET);
        let changed = |key: &str, value: Value| hs(with(claims(), key, value));
        let (s, at) = (NOW / 1000, |s: i64| format_rfc3339(s * 1000));
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        let cases: Vec<(&str, String, JwtError)> = vec![
            ("forged", sign(json!({"alg": "HS256"}), claims(), &[b'x'; 32]), JwtError::BadSignature),
            ("expired", changed("exp", json!(s - 31)), JwtError::Expired(at(s - 31))),
            ("not yet valid", changed("nbf", json!(s + 31)), JwtError::NotYetValid(at(s + 31))),
            ("no exp", changed("exp", Value::Null), JwtError::MissingClaim("exp")),
            ("text exp", changed("exp", json!("soon")), JwtError::InvalidClaim("exp")),
            ("wrong issuer", changed("iss", json!("https://evil.example")), JwtError::WrongIssuer),
            ("no issuer", changed("iss", Value::Null), JwtError::MissingClaim("iss")),
            ("wrong audience", changed("aud", json!(["other"])), JwtError::WrongAudience),
            ("no audience", changed("aud", Value::Null), JwtError::MissingClaim("aud")),
            ("no subject", changed("sub", Value::Null), JwtError::MissingClaim("sub")),
            ("unknown role", changed("role", json!("root")), JwtError::NoRole("role".into())),
            ("alg none", unsigned, JwtError::Unsigned),
            ("alg None", sign(json!({"alg": "None"}), claims(), SECRET), JwtError::Unsigned),
            (
                "crit",
                sign(json!({"alg": "HS256", "crit": ["exp"]}), claims(), SECRET),
                JwtError::CriticalExtension,
            ),
            ("two parts", "a.b".to_owned(), JwtError::Malformed),
            ("JWE", "a.b.c.d.e".to_owned(), JwtError::Encrypted),
            ("garbage header", "!!.b.c".to_owned(), JwtError::Malformed),
        ];
        for (name, token, want) in cases {
            assert_eq!(verify(&token).expect_err(name), want, "{name}");
        }
    }

    #[test]
    fn the_leeway_absorbs_clock_skew() {
        let s = NOW / 1000;
        let late = sign(json!({"alg": "HS256"}), with(claims(), "exp", json!(s - 29)), SECRET);
        let early = sign(json!({"alg": "HS256"}), with(claims(), "nbf", json!(s + 29)), SECRET);
        assert!(verify(&late).is_ok());
        assert!(verify(&early).is_ok());
    }

    #[test]
    fn an_rs256_token_is_refused_by_an_hs256_secret() {
        let token = sign(json!({"alg": "RS256"}), claims(), SECRET);
        assert!(matches!(verify(&token), Err(JwtError::WrongAlgorithm { expected: "HS256", .. })));
    }

    #[test]
    fn a_role_array_counts_its_strongest_known_role() {
        let token =
            sign(json!({"alg": "HS256"}), with(claims(), "role", json!(["viewer", "x", "operator"])), SECRET);
        assert_eq!(verify(&token).expect("valid").role, Role::Operator);
    }

    #[test]
    fn without_issuer_or_audience_configured_those_claims_are_not_checked() {
        let mut open = settings();
        open.issuer = None;
        open.audience = None;
        let token = sign(
            json!({"alg": "HS256"}),
            with(with(claims(), "iss", Value::Null), "aud", json!("other")),
            SECRET,
        );
        assert_eq!(open.verify_at(&token, NOW).expect("valid").issuer, None);
    }

    /// The public halves of the test keys in `crates/switchyard/tests/fixtures/jwt`.
    pub(super) const RSA_N: &str = "1_ifQFYo1SB810DC5KtZ_XnV1-6pV3f5s4hyzUk9RIkEVmL3WsE8w1dLCJK4NAriI2Kag8IumcelJasXmmTouJM6vaU9A5e-HYLa6LNGGWG9ilAy12xudOhlPF05UKDifQA2dHRWl06bvFGmY54u8f6ljR-NgkkgMy99uXAjB2s6Dp4kPS-ck3eBOhydogAYNu2b1l67vXvdMQ_kIuWBtPG8Kxma8LOr3Nz5t3vCljIp3PLa2qIS8vsjpmE-FWmo5jtddb50ABi18hCfqSINgmjp6FSi6mM0-1YU2D79IoDDx_m_N0ROWCFztP21kO2erdkzpsjAbrdKudt29g9VCQ";
    pub(super) const EC_X: &str = "sfZfEMezNdl3l_RBfimSp23sSKckst2iFFVdKBAXpbU";
    pub(super) const EC_Y: &str = "Dsa7edRQdwUvbm4p75L_H695Oe7FUWXuv5vLKThrlmM";

    #[test]
    fn an_hs256_token_is_refused_by_an_rsa_key_before_any_signature_check() {
        let n = RSA_N;
        let set = json!({"keys": [{"kty": "RSA", "kid": "r", "n": n, "e": "AQAB"}]});
        let rsa = JwtSettings { keys: JwtKeys::from_jwks(&set.to_string()).expect("usable"), ..settings() };
        let token = sign(json!({"alg": "HS256", "kid": "r"}), claims(), n.as_bytes());
        let error = rsa.verify_at(&token, NOW).expect_err("confused");
        assert_eq!(error.to_string(), "the token is signed with `HS256`, but key `r` accepts RS256 only");
        let unknown = sign(json!({"alg": "RS256", "kid": "zz"}), claims(), SECRET);
        assert_eq!(rsa.verify_at(&unknown, NOW), Err(JwtError::UnknownKid));
    }
}
