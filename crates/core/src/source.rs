//! Sources: where events enter the hub other than through `POST /v1/events`. A `webhook`
//! source receives a provider's signed requests at `POST /v1/sources/{id}/webhook`; its
//! configuration says how the signature is checked and how the event's type and id are taken.
//! The pull kinds (`outbox`, `nats`, `amqp`) are read by the hub through the [`pull`] seam.

mod config;
pub mod pull;
mod verify;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use config::{
    DEFAULT_RATE_LIMIT, FieldRule, HmacAlgorithm, SECRET_PATHS, SignatureEncoding, Verification,
    WebhookConfig, normalize_event_type,
};
pub use verify::{Headers, Rejection};

use crate::id::SourceId;
use crate::secret_paths::{leaf, mark_secret_set, parent, parent_mut, set_path};
use crate::time::{self, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Webhook,
    Outbox,
    Nats,
    Amqp,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [Self::Webhook, Self::Outbox, Self::Nats, Self::Amqp];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Outbox => "outbox",
            Self::Nats => "nats",
            Self::Amqp => "amqp",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// Read by the hub (through a [`pull::Puller`]) rather than called by the origin.
    pub fn is_pulled(self) -> bool {
        !matches!(self, Self::Webhook)
    }

    /// How events from a source of this kind name it in their `source`: `webhook`, `outbox`,
    /// or `broker` for both brokers.
    fn origin(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Outbox => "outbox",
            Self::Nats | Self::Amqp => "broker",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored source. `config` is the kind's configuration without its secrets, which live apart
/// in `secrets` (write-only, sealed at rest; `Debug` shows only their names).
#[derive(Clone, PartialEq)]
pub struct Source {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKind,
    pub config: Value,
    pub secrets: Map<String, Value>,
    pub enabled: bool,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("enabled", &self.enabled)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// How the API shows a source: secrets replaced by `<name>_set: true`, and the public URL a
/// provider is to call.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    pub id: SourceId,
    pub name: String,
    pub kind: SourceKind,
    #[schema(value_type = Object)]
    pub config: Value,
    pub enabled: bool,
    /// Where the provider sends its webhooks (`POST`, no bearer token); only for `webhook`.
    #[schema(example = "https://hub.example.com/v1/sources/src_0193d5a1e7f87c3a9a3b1c2d3e4f5a6b/webhook")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub version: i64,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// The path of a source's public webhook endpoint.
pub fn webhook_path(id: &SourceId) -> String {
    format!("/v1/sources/{id}/webhook")
}

/// The `source` of the events a source produces: `webhook:<source id>`, `outbox:<source id>`,
/// `broker:<source id>`.
pub fn event_source(kind: SourceKind, id: &SourceId) -> String {
    format!("{}:{id}", kind.origin())
}

impl Source {
    /// The source as the API shows it; `base_url` is the hub's public origin
    /// (`https://hub.example.com`).
    pub fn view(&self, base_url: &str) -> SourceView {
        let mut config = self.config.clone();
        for (path, secret) in &self.secrets {
            mark_secret_set(&mut config, path, secret);
        }
        SourceView {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind,
            config,
            enabled: self.enabled,
            url: (self.kind == SourceKind::Webhook)
                .then(|| format!("{}{}", base_url.trim_end_matches('/'), webhook_path(&self.id))),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The configuration with its secrets: what [`WebhookConfig::parse`] reads, and the base a
    /// merge patch is applied to (so omitted secrets are kept).
    pub fn full_config(&self) -> Value {
        let mut config = self.config.clone();
        for (path, secret) in &self.secrets {
            set_path(&mut config, path, secret.clone());
        }
        config
    }
}

/// Prepares a configuration a client wrote over `stored`: drops the `<name>_set` markers and
/// puts back each stored secret left out, unless the verification changed `type` (a new
/// scheme starts without the old one's secrets).
pub fn restore_absent_secrets(config: &mut Value, stored: &Source) {
    for (path, secret) in &stored.secrets {
        let old_type = parent(&stored.config, path).and_then(|o| o.get("type")).cloned();
        let leaf = leaf(path);
        let Some(map) = parent_mut(config, path) else {
            continue;
        };
        map.remove(&format!("{leaf}_set"));
        if map.get("type").cloned() == old_type && !map.contains_key(leaf) {
            map.insert(leaf.to_owned(), secret.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::secret_paths::split_secrets;

    fn stored(mut config: Value) -> Source {
        let secrets = split_secrets(&mut config, &SECRET_PATHS);
        Source {
            id: SourceId::generate(),
            name: "github".into(),
            kind: SourceKind::Webhook,
            config,
            secrets,
            enabled: true,
            version: 1,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn the_view_hides_secrets_and_names_the_public_url() {
        let source = stored(json!({"verification": {"type": "github", "secret": "s3cret"}}));
        let view = source.view("https://hub.example.com/");
        assert_eq!(view.config, json!({"verification": {"type": "github", "secret_set": true}}));
        assert_eq!(view.url, Some(format!("https://hub.example.com/v1/sources/{}/webhook", source.id)));
        assert!(!format!("{source:?}").contains("s3cret"));
    }

    #[test]
    fn a_rewrite_keeps_secrets_unless_the_scheme_changes() {
        let source = stored(json!({"verification": {"type": "github", "secret": "s3cret"}}));
        let mut same = source.view("http://x").config;
        restore_absent_secrets(&mut same, &source);
        assert_eq!(same, json!({"verification": {"type": "github", "secret": "s3cret"}}));

        let mut other = json!({"verification": {"type": "shopify", "secret_set": true}});
        restore_absent_secrets(&mut other, &source);
        assert_eq!(other, json!({"verification": {"type": "shopify"}}));
    }

    #[test]
    fn events_name_their_source_by_kind_and_id() {
        let id = SourceId::generate();
        assert_eq!(event_source(SourceKind::Webhook, &id), format!("webhook:{id}"));
        assert_eq!(event_source(SourceKind::Outbox, &id), format!("outbox:{id}"));
        assert_eq!(event_source(SourceKind::Nats, &id), format!("broker:{id}"));
        assert_eq!(event_source(SourceKind::Amqp, &id), format!("broker:{id}"));
    }
}
