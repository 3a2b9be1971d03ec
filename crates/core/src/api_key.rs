//! API keys and the roles they carry.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::id::ApiKeyId;
use crate::time::{self, Millis};

/// Roles, each including every one after it: admin ⊃ operator ⊃ publisher ⊃ viewer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Publisher,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Publisher, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Publisher => "publisher",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    /// Whether a holder of `self` may do what `needed` allows.
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API key: only the SHA-256 of its token is kept.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// The first characters of the token, to tell keys apart.
    pub prefix: String,
    #[serde(skip)]
    pub token_hash: String,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Millis>,
}

const TOKEN_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const TOKEN_RANDOM_CHARS: usize = 40;
const PREFIX_CHARS: usize = 10;

/// A freshly made key: the token is shown once and never stored.
pub struct IssuedKey {
    pub key: ApiKey,
    pub token: String,
}

impl ApiKey {
    pub fn issue(name: String, role: Role, now: Millis) -> IssuedKey {
        let mut rng = rand::rng();
        let random: String = (0..TOKEN_RANDOM_CHARS)
            .map(|_| TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())] as char)
            .collect();
        let token = format!("sy_{random}");
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name,
            role,
            prefix: token[..PREFIX_CHARS].to_owned(),
            token_hash: hash_token(&token),
            created_at: now,
            revoked_at: None,
        };
        IssuedKey { key, token }
    }
}

pub fn hash_token(token: &str) -> String {
    crate::digest::sha256_hex(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_those_below_them() {
        assert!(Role::Admin.includes(Role::Viewer));
        assert!(Role::Operator.includes(Role::Publisher));
        assert!(Role::Publisher.includes(Role::Publisher));
        assert!(!Role::Publisher.includes(Role::Operator));
        assert!(!Role::Viewer.includes(Role::Publisher));
    }

    #[test]
    fn issued_tokens_are_random_and_only_their_hash_is_kept() {
        let a = ApiKey::issue("a".into(), Role::Admin, 0);
        let b = ApiKey::issue("b".into(), Role::Admin, 0);
        assert!(a.token.starts_with("sy_"));
        assert_eq!(a.token.len(), 3 + TOKEN_RANDOM_CHARS);
        assert_ne!(a.token, b.token);
        assert_eq!(a.key.token_hash, hash_token(&a.token));
        assert!(a.token.starts_with(&a.key.prefix));
    }
}
