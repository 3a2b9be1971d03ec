//! Masking secrets out of a configuration before it is shown.
//!
//! Masking is by shape, not by a list of fields, so a secret key added later is covered without
//! touching this file: a key whose name says it holds a secret (`*secret*`, `*password*`,
//! `*token*`, `master_key`) is masked whole, and any other string that is a URL has the password
//! of its user info and any secret-named query parameter masked.

use std::borrow::Cow;

use toml::Value;

/// What a masked secret reads as.
pub const MASK: &str = "***";

/// Words that mark a key as holding a secret, matched against the `_`-separated words of its
/// name.
const SECRET_WORDS: &[&str] = &["secret", "password", "passwd", "token", "credentials"];
/// Whole key names that hold a secret without saying so in one word.
const SECRET_KEYS: &[&str] = &["master_key", "private_key", "api_key"];

/// Masks, in place, every secret in a configuration tree.
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                match value {
                    Value::String(text) if is_secret_key(key) => *text = MASK.to_owned(),
                    other => mask_secrets(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        Value::String(text) => {
            if let Some(masked) = mask_url(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str()) || key.split(['_', '-', '.']).any(|word| SECRET_WORDS.contains(&word))
}

/// The URL with any password in it masked, fit for logs and error messages.
pub fn redact_url(raw: &str) -> Cow<'_, str> {
    mask_url(raw).map_or(Cow::Borrowed(raw), Cow::Owned)
}

/// The URL with its secrets masked, or `None` when it is not a URL or holds none.
fn mask_url(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let masked_authority = mask_userinfo(authority);
    let masked_tail = mask_query(tail);
    if masked_authority.is_none() && masked_tail.is_none() {
        return None;
    }
    Some(format!(
        "{scheme}://{}{}",
        masked_authority.as_deref().unwrap_or(authority),
        masked_tail.as_deref().unwrap_or(tail)
    ))
}

/// `user:***@host` for `user:password@host`; `None` without a password.
fn mask_userinfo(authority: &str) -> Option<String> {
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| format!("{user}:{MASK}@{host}"))
}

/// The path, query and fragment with secret-named query parameters masked, or `None` when
/// there are none.
fn mask_query(tail: &str) -> Option<String> {
    let (before, query_and_fragment) = tail.split_once('?')?;
    let (query, fragment) = match query_and_fragment.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query_and_fragment, None),
    };
    let mut masked_any = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if is_secret_key(name) && !value.is_empty() => {
                masked_any = true;
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    if !masked_any {
        return None;
    }
    let mut out = format!("{before}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        let cases = [
            ("postgres://app:s3cr%40t@db.example:5432/hub", Some("postgres://app:***@db.example:5432/hub")),
            ("postgres://app:p@ss@db/hub?sslmode=require", Some("postgres://app:***@db/hub?sslmode=require")),
            ("postgres://db/hub?user=app&password=x", Some("postgres://db/hub?user=app&password=***")),
            ("postgres://app@db/hub", None),
            ("sqlite://switchyard.db", None),
            ("sqlite::memory:", None),
            ("not a url", None),
        ];
        for (raw, want) in cases {
            assert_eq!(mask_url(raw).as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn secret_named_keys_are_masked_whole() {
        let mut value: Value = toml::from_str(
            r#"
            [auth.jwt]
            hs256_secret = "abc"
            issuer = "https://idp.example"
            [server.tls]
            key = "key.pem"
            [x]
            master_key = "k"
            access_token = "t"
            "#,
        )
        .unwrap();
        mask_secrets(&mut value);
        assert_eq!(value["auth"]["jwt"]["hs256_secret"].as_str(), Some(MASK));
        assert_eq!(value["auth"]["jwt"]["issuer"].as_str(), Some("https://idp.example"));
        assert_eq!(value["server"]["tls"]["key"].as_str(), Some("key.pem"));
        assert_eq!(value["x"]["master_key"].as_str(), Some(MASK));
        assert_eq!(value["x"]["access_token"].as_str(), Some(MASK));
    }
}
