//! Taking an event's type and id out of a webhook, by the source's rules.

use std::sync::Arc;

use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::digest::sha256_hex;
use switchyard_core::error::excerpt;
use switchyard_core::event::EventId;
use switchyard_core::source::{FieldRule, Headers, WebhookConfig, normalize_event_type};

use super::IntakeError;
use crate::jq::{self, JqLimits, JqProgram, on_jq_thread};

/// One rule, ready to run.
enum Extractor {
    Header {
        name: String,
        prefix: String,
    },
    /// A jq filter that is only a path of keys (`.data.object.id`): walked directly, which
    /// gives what jq would and costs no thread.
    Path {
        keys: Vec<String>,
        prefix: String,
    },
    Program {
        program: Arc<JqProgram>,
        prefix: String,
    },
    Value(String),
    BodyDigest,
}

pub(super) struct Extractors {
    event_type: Extractor,
    event_id: Extractor,
}

/// What a webhook's event is called.
pub(super) struct Taken {
    pub event_type: String,
    pub event_id: String,
}

impl Extractors {
    /// Compiles the rules of `config`; a filter that does not compile is a violation of
    /// `config.event_type.jq` or `config.event_id.jq`.
    pub(super) async fn compile(config: &WebhookConfig) -> Result<Self, ValidationError> {
        let event_type = Extractor::compile(&config.event_type).await.map_err(|m| at("event_type", m));
        let event_id = Extractor::compile(&config.event_id).await.map_err(|m| at("event_id", m));
        match (event_type, event_id) {
            (Ok(event_type), Ok(event_id)) => Ok(Self { event_type, event_id }),
            (Err(a), Err(b)) => Err(ValidationError(a.0.into_iter().chain(b.0).collect())),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    pub(super) async fn take(
        &self,
        headers: &(dyn Headers + Sync),
        body: &[u8],
        payload: &Value,
        limits: &JqLimits,
    ) -> Result<Taken, IntakeError> {
        let raw_type = self.event_type.run(headers, body, payload, limits).await;
        let raw_id = self.event_id.run(headers, body, payload, limits).await;
        let event_type = match raw_type {
            Ok((raw, prefix)) => match normalize_event_type(&raw) {
                Some(name) => format!("{prefix}{name}"),
                None => {
                    return Err(invalid("event_type", format!("{:?} names no event type", excerpt(&raw))));
                }
            },
            Err(why) => return Err(invalid("event_type", why)),
        };
        let event_id = match raw_id {
            Ok((raw, prefix)) => {
                let id = format!("{prefix}{raw}");
                // A provider's id that is not a valid event id still names the event: its
                // digest is stable, so a redelivery is still recognised.
                if EventId::parse(&id).is_ok() { id } else { sha256_hex(id.as_bytes()) }
            }
            Err(why) => return Err(invalid("event_id", why)),
        };
        Ok(Taken { event_type, event_id })
    }
}

impl Extractor {
    async fn compile(rule: &FieldRule) -> Result<Self, String> {
        Ok(match rule {
            FieldRule::Header { name, prefix } => Self::Header { name: name.clone(), prefix: prefix.clone() },
            FieldRule::Jq { filter, prefix } => match key_path(filter) {
                Some(keys) => Self::Path { keys, prefix: prefix.clone() },
                None => {
                    let program = jq::compile(filter.clone()).await.map_err(|e| e.message().to_owned())?;
                    Self::Program { program: Arc::new(program), prefix: prefix.clone() }
                }
            },
            FieldRule::Value(value) => Self::Value(value.clone()),
            FieldRule::BodyDigest => Self::BodyDigest,
        })
    }

    /// The raw value and the prefix to put before it; `Err` says what is missing.
    async fn run(
        &self,
        headers: &(dyn Headers + Sync),
        body: &[u8],
        payload: &Value,
        limits: &JqLimits,
    ) -> Result<(String, String), String> {
        match self {
            Self::Header { name, prefix } => match headers.get(name) {
                Some(value) if !value.is_empty() => Ok((value.to_owned(), prefix.clone())),
                _ => Err(format!("the {name} header is missing")),
            },
            Self::Path { keys, prefix } => {
                let found = keys.iter().try_fold(payload, |value, key| value.get(key));
                scalar(found).map(|v| (v, prefix.clone())).ok_or_else(|| missing_path(keys))
            }
            Self::Program { program, prefix } => {
                let (program, input, limits) = (program.clone(), payload.clone(), *limits);
                let output = on_jq_thread(move || program.first_output(&input, &limits))
                    .await
                    .and_then(|run| run)
                    .map_err(|e| format!("its jq filter failed: {e}"))?;
                scalar(output.as_ref())
                    .map(|v| (v, prefix.clone()))
                    .ok_or_else(|| "its jq filter gave no string".to_owned())
            }
            Self::Value(value) => Ok((value.clone(), String::new())),
            Self::BodyDigest => Ok((sha256_hex(body), String::new())),
        }
    }
}

/// A string, or a number written as JSON; nothing else names an event.
fn scalar(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn missing_path(keys: &[String]) -> String {
    format!("the body has no string at .{}", keys.join("."))
}

/// The keys of a filter that is nothing but `.key.key…` (identifier keys), else `None`.
fn key_path(filter: &str) -> Option<Vec<String>> {
    let rest = filter.trim().strip_prefix('.')?;
    let keys: Vec<String> = rest.split('.').map(str::to_owned).collect();
    let identifier = |k: &String| {
        k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    keys.iter().all(identifier).then_some(keys)
}

fn at(field: &str, message: String) -> ValidationError {
    ValidationError::single(format!("config.{field}.jq"), message)
}

fn invalid(field: &str, message: String) -> IntakeError {
    IntakeError::Invalid(ValidationError::single(field, message))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct NoHeaders;

    impl Headers for NoHeaders {
        fn get(&self, _: &str) -> Option<&str> {
            None
        }
    }

    #[test]
    fn only_plain_key_paths_skip_jq() {
        assert_eq!(key_path(".type"), Some(vec!["type".to_owned()]));
        assert_eq!(key_path(" .data.object.id "), Some(vec!["data".into(), "object".into(), "id".into()]));
        for not_a_path in [".", ".a[0]", ".a | .b", "\"x\"", ".a..b", ".1a", "type"] {
            assert_eq!(key_path(not_a_path), None, "{not_a_path}");
        }
    }

    #[tokio::test]
    async fn paths_and_programs_agree() {
        let payload = json!({"data": {"kind": "Charge/Succeeded", "n": 7}});
        let limits = JqLimits::default();
        for filter in [".data.kind", ".data | .kind"] {
            let config = WebhookConfig::parse(&json!({
                "verification": {"type": "none"},
                "event_type": {"jq": filter, "prefix": "pay."},
                "event_id": {"jq": ".data.n"}
            }))
            .unwrap();
            let extractors = Extractors::compile(&config).await.unwrap();
            let taken = extractors.take(&NoHeaders, b"{}", &payload, &limits).await.ok().unwrap();
            assert_eq!(taken.event_type, "pay.charge.succeeded", "{filter}");
            assert_eq!(taken.event_id, "7", "{filter}");
        }
    }

    #[tokio::test]
    async fn a_missing_value_or_a_bad_filter_is_named() {
        let config = WebhookConfig::parse(&json!({
            "verification": {"type": "none"}, "event_type": {"jq": ".type"}, "event_id": {"header": "X-Id"}
        }))
        .unwrap();
        let extractors = Extractors::compile(&config).await.unwrap();
        let error = extractors.take(&NoHeaders, b"{}", &json!({}), &JqLimits::default()).await.err().unwrap();
        assert!(matches!(error, IntakeError::Invalid(e) if e.0[0].field == "event_type"));

        let broken =
            WebhookConfig::parse(&json!({"verification": {"type": "none"}, "event_type": {"jq": ".a |"}}))
                .unwrap();
        let error = Extractors::compile(&broken).await.err().unwrap();
        assert_eq!(error.0[0].field, "config.event_type.jq");
    }

    #[tokio::test]
    async fn ids_that_are_not_event_ids_become_their_digest() {
        let config = WebhookConfig::parse(&json!({
            "verification": {"type": "none"}, "event_type": {"value": "x"}, "event_id": {"jq": ".id"}
        }))
        .unwrap();
        let extractors = Extractors::compile(&config).await.unwrap();
        let taken = extractors
            .take(&NoHeaders, b"{}", &json!({"id": "a b"}), &JqLimits::default())
            .await
            .ok()
            .unwrap();
        assert_eq!(taken.event_id, sha256_hex(b"a b"));
    }
}
