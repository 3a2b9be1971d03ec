//! Secrets inside a resource's configuration, named by dotted paths (`auth.password`): split
//! out to be sealed apart, marked `<name>_set` when shown, put back when a client rewrites the
//! configuration without them.

use serde_json::{Map, Value};

/// Moves the string values at `paths` (dotted) out of `config` into a map keyed by path.
pub fn split_secrets(config: &mut Value, paths: &[&str]) -> Map<String, Value> {
    let mut secrets = Map::new();
    for path in paths {
        let secret = parent_mut(config, path).and_then(|map| map.remove(leaf(path)));
        if let Some(secret) = secret.filter(|s| !s.is_null()) {
            secrets.insert((*path).to_owned(), secret);
        }
    }
    secrets
}

pub(crate) fn set_path(config: &mut Value, path: &str, secret: Value) {
    if let Some(map) = parent_mut(config, path) {
        map.remove(&format!("{}_set", leaf(path)));
        map.insert(leaf(path).to_owned(), secret);
    }
}

/// `<leaf>_set: true`; for a map of secrets, `<leaf>_set: {"<name>": true, …}`, so a client
/// sees which names it holds and none of their values.
pub(crate) fn mark_secret_set(config: &mut Value, path: &str, secret: &Value) {
    let marker = match secret {
        Value::Object(named) => {
            Value::Object(named.keys().map(|name| (name.clone(), Value::Bool(true))).collect())
        }
        _ => Value::Bool(true),
    };
    if let Some(map) = parent_mut(config, path) {
        map.insert(format!("{}_set", leaf(path)), marker);
    }
}

pub(crate) fn leaf(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, leaf)| leaf)
}

/// The object holding the value at dotted `path`.
pub(crate) fn parent_mut<'a>(config: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let holder = match path.rsplit_once('.') {
        Some((parent, _)) => parent.split('.').try_fold(config, |v, key| v.as_object_mut()?.get_mut(key))?,
        None => config,
    };
    holder.as_object_mut()
}

pub(crate) fn parent<'a>(config: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
    let holder = match path.rsplit_once('.') {
        Some((parent, _)) => parent.split('.').try_fold(config, |v, key| v.as_object()?.get(key))?,
        None => config,
    };
    holder.as_object()
}
