//! `[auth.jwt]` and `[rate_limit]`: who may call the API beside API keys, and how often.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_api::jwt::JwtKeys;
use switchyard_core::api_key::Role;

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt: JwtConfig,
    /// `GET /metrics` needs a bearer token (an API key or a JWT, any role) instead of being
    /// open like the health probes.
    pub metrics_require_key: bool,
}

/// `[auth.jwt]`: JWT bearer tokens, off unless one key source is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// A shared HS256 secret (at least 32 bytes); masked when printed.
    pub hs256_secret: Option<String>,
    /// A JSON Web Key Set file of RS256 / ES256 public keys, chosen by the token's `kid`.
    pub jwks_file: Option<PathBuf>,
    /// When set, a token's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, a token's `aud` must be it or hold it.
    pub audience: Option<String>,
    /// The top-level claim holding one of admin|operator|publisher|viewer (or an array of them).
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_ms: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            role_claim: "role".to_owned(),
            leeway_ms: 30_000,
        }
    }
}

impl JwtConfig {
    /// Whether JWTs are accepted at all.
    pub fn enabled(&self) -> bool {
        self.hs256_secret.is_some() || self.jwks_file.is_some()
    }

    /// The verifying keys: `None` when JWT is off, an error naming the key at fault when the
    /// source cannot be used. Reads `jwks_file`.
    pub fn keys(&self) -> Result<Option<JwtKeys>, String> {
        match (&self.hs256_secret, &self.jwks_file) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                Err("auth.jwt: set hs256_secret or jwks_file, not both (each fixes the algorithm)".to_owned())
            }
            (Some(secret), None) => JwtKeys::hs256(secret.as_bytes())
                .map(Some)
                .map_err(|err| format!("auth.jwt.hs256_secret: {err}")),
            (None, Some(path)) => {
                let at = path.display();
                let text = std::fs::read_to_string(path)
                    .map_err(|err| format!("auth.jwt.jwks_file: cannot read `{at}`: {err}"))?;
                JwtKeys::from_jwks(&text)
                    .map(Some)
                    .map_err(|err| format!("auth.jwt.jwks_file: `{at}`: {err}"))
            }
        }
    }
}

/// `[rate_limit]`: a token bucket per API key or JWT subject; `per_second = 0` turns it off.
/// `[rate_limit.roles.<role>]` gives a role its own bucket; a key it leaves out is taken from
/// `[rate_limit]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second a bucket refills with.
    pub per_second: u32,
    /// Requests a full bucket lets through at once.
    pub burst: u32,
    pub roles: BTreeMap<Role, RoleRateLimit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { per_second: 100, burst: 200, roles: BTreeMap::new() }
    }
}

/// `[rate_limit.roles.<role>]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleRateLimit {
    pub per_second: Option<u32>,
    pub burst: Option<u32>,
}

impl RateLimitConfig {
    /// The bucket of `role`: its own values, else `[rate_limit]`'s.
    pub fn for_role(&self, role: Role) -> (u32, u32) {
        let own = self.roles.get(&role).copied().unwrap_or_default();
        (own.per_second.unwrap_or(self.per_second), own.burst.unwrap_or(self.burst))
    }
}

/// The checks of `Config::validate` for these sections; appends one line per problem.
pub(super) fn validate(auth: &AuthConfig, rate_limit: &RateLimitConfig, problems: &mut Vec<String>) {
    let jwt = &auth.jwt;
    if let Err(problem) = jwt.keys() {
        problems.push(problem);
    }
    for (key, value) in [("issuer", &jwt.issuer), ("audience", &jwt.audience)] {
        match value {
            Some(text) if text.trim().is_empty() => {
                problems.push(format!("auth.jwt.{key}: must not be empty (leave it out to skip the check)"));
            }
            Some(_) if !jwt.enabled() => problems
                .push(format!("auth.jwt.{key}: is set, but JWT is off without hs256_secret or jwks_file")),
            _ => {}
        }
    }
    if jwt.role_claim.trim().is_empty() {
        problems.push("auth.jwt.role_claim: must not be empty".to_owned());
    }
    let mut bucket = |key: &str, per_second: u32, burst: u32| {
        if per_second > 0 && burst == 0 {
            problems.push(format!("{key}: burst must be at least 1 while per_second is above 0"));
        }
    };
    bucket("rate_limit", rate_limit.per_second, rate_limit.burst);
    for role in rate_limit.roles.keys() {
        let (per_second, burst) = rate_limit.for_role(*role);
        bucket(&format!("rate_limit.roles.{role}"), per_second, burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(auth: &AuthConfig, rate_limit: &RateLimitConfig) -> Vec<String> {
        let mut problems = Vec::new();
        validate(auth, rate_limit, &mut problems);
        problems
    }

    #[test]
    fn defaults_are_valid_with_jwt_off() {
        assert!(problems(&AuthConfig::default(), &RateLimitConfig::default()).is_empty());
        assert!(AuthConfig::default().jwt.keys().expect("no source").is_none());
    }

    #[test]
    fn jwt_key_sources_are_checked() {
        let mut auth = AuthConfig::default();
        auth.jwt.hs256_secret = Some("short".into());
        auth.jwt.jwks_file = Some("keys.json".into());
        assert_eq!(
            problems(&auth, &RateLimitConfig::default()),
            ["auth.jwt: set hs256_secret or jwks_file, not both (each fixes the algorithm)"]
        );

        auth.jwt.jwks_file = None;
        let found = problems(&auth, &RateLimitConfig::default());
        assert!(
            found[0].starts_with("auth.jwt.hs256_secret: the HS256 secret must be at least 32 bytes"),
            "{found:?}"
        );

        auth.jwt.hs256_secret = None;
        auth.jwt.jwks_file = Some("/no/such/jwks.json".into());
        let found = problems(&auth, &RateLimitConfig::default());
        assert!(found[0].starts_with("auth.jwt.jwks_file: cannot read `/no/such/jwks.json`"), "{found:?}");
    }

    #[test]
    fn issuer_without_a_key_source_and_empty_values_are_refused() {
        let mut auth = AuthConfig::default();
        auth.jwt.issuer = Some("https://idp.example".into());
        auth.jwt.audience = Some(" ".into());
        auth.jwt.role_claim = String::new();
        let found = problems(&auth, &RateLimitConfig::default());
        assert_eq!(
            found,
            [
                "auth.jwt.issuer: is set, but JWT is off without hs256_secret or jwks_file",
                "auth.jwt.audience: must not be empty (leave it out to skip the check)",
                "auth.jwt.role_claim: must not be empty",
            ]
        );
    }

    #[test]
    fn the_example_file_shows_these_defaults() {
        let example: super::super::Config =
            toml::from_str(include_str!("../../../../switchyard.example.toml")).expect("the example parses");
        assert_eq!(example.auth, AuthConfig::default());
        assert_eq!(example.rate_limit, RateLimitConfig::default());
    }

    #[test]
    fn role_buckets_are_read_from_their_own_tables() {
        let limits: RateLimitConfig =
            toml::from_str("per_second = 5\n[roles.publisher]\nburst = 9\n[roles.admin]\nper_second = 0\n")
                .expect("parses");
        assert_eq!(limits.for_role(Role::Publisher), (5, 9));
        assert_eq!(limits.for_role(Role::Admin), (0, 200));
        let typo =
            toml::from_str::<RateLimitConfig>("[roles.publishr]\nburst = 9\n").expect_err("no such role");
        assert!(typo.to_string().contains("publishr"), "{typo}");
    }

    #[test]
    fn role_buckets_inherit_what_they_leave_out() {
        let mut limits = RateLimitConfig::default();
        limits.roles.insert(Role::Publisher, RoleRateLimit { per_second: Some(500), burst: None });
        limits.roles.insert(Role::Viewer, RoleRateLimit { per_second: None, burst: Some(0) });
        assert_eq!(limits.for_role(Role::Publisher), (500, 200));
        assert_eq!(limits.for_role(Role::Admin), (100, 200));
        assert_eq!(
            problems(&AuthConfig::default(), &limits),
            ["rate_limit.roles.viewer: burst must be at least 1 while per_second is above 0"]
        );
        limits.roles.insert(Role::Viewer, RoleRateLimit { per_second: Some(0), burst: Some(0) });
        assert!(
            problems(&AuthConfig::default(), &limits).is_empty(),
            "0 per second turns the role's limit off"
        );
    }
}
