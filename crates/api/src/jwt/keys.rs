//! The keys JWTs are verified with: an HS256 secret, or the RS256 / ES256 public keys of a JSON
//! Web Key Set. Each key accepts exactly one algorithm, fixed here and never by a token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::{JwtError, TokenHeader, sanitize};

/// The shortest HS256 secret accepted: the hash size, as RFC 7518 §3.2 requires.
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// The smallest RSA modulus accepted in a JWKS, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The keys tokens are verified with; each accepts exactly one algorithm.
#[derive(Clone)]
pub struct JwtKeys {
    kind: KeysKind,
    skipped: Vec<String>,
}

#[derive(Clone)]
enum KeysKind {
    Hs256(DecodingKey),
    Jwks(Vec<JwksKey>),
}

#[derive(Clone)]
struct JwksKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            KeysKind::Hs256(_) => f.write_str("JwtKeys::Hs256(***)"),
            KeysKind::Jwks(keys) => f
                .debug_list()
                .entries(
                    keys.iter().map(|k| format!("{:?} {}", k.alg, k.kid.as_deref().unwrap_or("(no kid)"))),
                )
                .finish(),
        }
    }
}

/// Why a key source cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)")]
    ShortSecret,
    #[error("not a JSON Web Key Set (an object with a `keys` array): {0}")]
    NotJwks(#[source] serde_json::Error),
    #[error("key {index} ({kid}): {message}")]
    BadKey { index: usize, kid: String, message: String },
    #[error("two keys have the kid `{0}`")]
    DuplicateKid(String),
    #[error("every key needs a `kid` when the set holds more than one usable key")]
    MissingKid,
    #[error("no usable RS256 or ES256 signing key{}", skipped_note(.0))]
    NoUsableKey(Vec<String>),
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() { String::new() } else { format!(" (skipped: {})", skipped.join("; ")) }
}

impl JwtKeys {
    /// A shared HS256 secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtKeyError> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(JwtKeyError::ShortSecret);
        }
        Ok(Self { kind: KeysKind::Hs256(DecodingKey::from_secret(secret)), skipped: Vec::new() })
    }

    /// The public keys of a JWKS document. Keys that are not for signatures or of another kind
    /// (symmetric, OKP, other curves and algorithms) are skipped and listed by
    /// [`JwtKeys::skipped`]; a malformed or weak key is an error.
    pub fn from_jwks(json: &str) -> Result<Self, JwtKeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(JwtKeyError::NotJwks)?;
        let mut keys: Vec<JwksKey> = Vec::new();
        let mut skipped = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.kid.clone();
            let label = kid.clone().unwrap_or_else(|| "no kid".to_owned());
            let bad = |message: String| JwtKeyError::BadKey { index, kid: label.clone(), message };
            match jwk.usable().map_err(bad)? {
                Usable::Skip(reason) => skipped.push(format!("key {index} ({label}): {reason}")),
                Usable::Key(alg, key) => {
                    if let Some(kid) = &kid
                        && keys.iter().any(|k| k.kid.as_deref() == Some(kid))
                    {
                        return Err(JwtKeyError::DuplicateKid(kid.clone()));
                    }
                    keys.push(JwksKey { kid, alg, key });
                }
            }
        }
        if keys.is_empty() {
            return Err(JwtKeyError::NoUsableKey(skipped));
        }
        if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
            return Err(JwtKeyError::MissingKid);
        }
        Ok(Self { kind: KeysKind::Jwks(keys), skipped })
    }

    /// The JWKS keys that were left out, and why; worth a warning at start-up.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The key and algorithm for a token's header; the token cannot choose the algorithm.
    pub(super) fn select(&self, header: &TokenHeader) -> Result<(&DecodingKey, Algorithm), JwtError> {
        let (key, expected, kid) = match &self.kind {
            KeysKind::Hs256(key) => (key, Algorithm::HS256, None),
            KeysKind::Jwks(keys) => {
                let found = match (&header.kid, keys.as_slice()) {
                    (Some(kid), _) => keys
                        .iter()
                        .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                        .ok_or(JwtError::UnknownKid)?,
                    (None, [only]) => only,
                    (None, _) => return Err(JwtError::MissingKid),
                };
                (&found.key, found.alg, found.kid.as_deref())
            }
        };
        if header.alg != algorithm_name(expected) {
            return Err(JwtError::WrongAlgorithm {
                alg: sanitize(&header.alg),
                expected: algorithm_name(expected),
                key: kid.map_or_else(
                    || "the configured key".to_owned(),
                    |kid| format!("key `{}`", sanitize(kid)),
                ),
            });
        }
        Ok((key, expected))
    }
}

fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "an unsupported algorithm",
    }
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// The JWK members read here (RFC 7517, 7518); others are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

enum Usable {
    Key(Algorithm, DecodingKey),
    Skip(String),
}

impl Jwk {
    fn usable(&self) -> Result<Usable, String> {
        if let Some(use_) = self.use_.as_deref().filter(|u| *u != "sig") {
            return Ok(Usable::Skip(format!("`use` is `{}`, not `sig`", sanitize(use_))));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Ok(Usable::Skip("its `key_ops` do not include `verify`".to_owned()));
        }
        let (alg, expected) = match self.kty.as_str() {
            "RSA" => (Algorithm::RS256, "RS256"),
            "EC" => (Algorithm::ES256, "ES256"),
            other => {
                return Ok(Usable::Skip(format!(
                    "key type `{}` is not read (RSA and EC only)",
                    sanitize(other)
                )));
            }
        };
        if let Some(given) = self.alg.as_deref().filter(|a| *a != expected) {
            return Ok(Usable::Skip(format!(
                "algorithm `{}` is not supported ({expected} only)",
                sanitize(given)
            )));
        }
        let member = |value: &Option<String>, name: &str| {
            let text = value.as_deref().ok_or_else(|| format!("the `{name}` member is missing"))?;
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| format!("the `{name}` member is not base64url"))
        };
        match alg {
            Algorithm::ES256 => {
                if self.crv.as_deref() != Some("P-256") {
                    let crv = self.crv.as_deref().map(sanitize).unwrap_or_else(|| "none".to_owned());
                    return Ok(Usable::Skip(format!("curve `{crv}` is not supported (P-256 only)")));
                }
                let (x, y) = (member(&self.x, "x")?, member(&self.y, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("`x` and `y` of a P-256 key must be 32 bytes each".to_owned());
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                checked(alg, DecodingKey::from_ec_der(&point))
            }
            _ => {
                let (n, e) = (member(&self.n, "n")?, member(&self.e, "e")?);
                let n = n.strip_prefix(&[0u8][..]).unwrap_or(&n);
                let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
                    ));
                }
                if e.is_empty() {
                    return Err("the `e` member is empty".to_owned());
                }
                checked(alg, DecodingKey::from_rsa_raw_components(n, &e))
            }
        }
    }
}

/// The key, once the crypto backend has parsed it (a bad EC point or RSA exponent fails here,
/// at start-up, rather than on every request).
fn checked(alg: Algorithm, key: DecodingKey) -> Result<Usable, String> {
    match jsonwebtoken::crypto::verify("", b"", &key, alg) {
        Ok(_) => Ok(Usable::Key(alg, key)),
        Err(_) => Err(format!("not a valid {} public key", algorithm_name(alg))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::{EC_X, EC_Y, RSA_N};
    use super::*;

    #[test]
    fn short_secrets_are_refused() {
        assert!(matches!(JwtKeys::hs256(b"short"), Err(JwtKeyError::ShortSecret)));
    }

    #[test]
    fn jwks_parsing_skips_foreign_keys_and_refuses_bad_ones() {
        let (n, x, y) = (RSA_N, EC_X, EC_Y);
        let small = URL_SAFE_NO_PAD.encode([0xC5u8; 128]);
        let xy = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let set = json!({"keys": [
            {"kty": "RSA", "kid": "r", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": x, "y": y},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "o", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": xy, "y": xy},
        ]});
        let keys = JwtKeys::from_jwks(&set.to_string()).expect("usable");
        assert_eq!(keys.skipped().len(), 4, "{:?}", keys.skipped());
        assert_eq!(format!("{keys:?}"), r#"["RS256 r", "ES256 e"]"#);

        let weak = json!({"keys": [{"kty": "RSA", "kid": "w", "n": small, "e": "AQAB"}]});
        assert!(matches!(JwtKeys::from_jwks(&weak.to_string()), Err(JwtKeyError::BadKey { .. })));
        let off_curve = json!({"keys": [{"kty": "EC", "kid": "c", "crv": "P-256", "x": xy, "y": xy}]});
        let error = JwtKeys::from_jwks(&off_curve.to_string()).expect_err("not a point");
        assert_eq!(error.to_string(), "key 0 (c): not a valid ES256 public key");
        let twice = json!({"keys": [{"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"}, {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"}]});
        assert!(matches!(JwtKeys::from_jwks(&twice.to_string()), Err(JwtKeyError::DuplicateKid(_))));
        let anonymous = json!({"keys": [{"kty": "RSA", "n": n, "e": "AQAB"}, {"kty": "RSA", "kid": "b", "n": n, "e": "AQAB"}]});
        assert!(matches!(JwtKeys::from_jwks(&anonymous.to_string()), Err(JwtKeyError::MissingKid)));
        let none = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(matches!(JwtKeys::from_jwks(&none.to_string()), Err(JwtKeyError::NoUsableKey(_))));
        assert!(matches!(JwtKeys::from_jwks("[]"), Err(JwtKeyError::NotJwks(_))));
    }
}
