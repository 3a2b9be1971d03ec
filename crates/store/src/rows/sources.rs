//! A source's row (`sources`) to and from [`Source`]; its secrets sealed as a destination's
//! are, under a place of their own.

use serde_json::{Map, Value};
use switchyard_core::id::SourceId;
use switchyard_core::source::{Source, SourceKind};
use switchyard_core::store::StoreResult;

use super::{from_json, open_sealed, seal_map};
use crate::error::unreadable;
use crate::seal::{Sealer, place};

/// Where a source's secrets are kept, sealed. A place apart from `destinations.secrets`, so a
/// destination's sealed value copied into a source's row does not open there.
pub const SOURCE_SECRETS: &str = "sources.secrets";

pub fn source_place(id: &str) -> Vec<u8> {
    place(SOURCE_SECRETS, &[id])
}

/// The sealed text of a source's secrets.
pub fn seal_source_secrets(sealer: &Sealer, id: &str, secrets: &Map<String, Value>) -> StoreResult<String> {
    seal_map(sealer, SOURCE_SECRETS, &source_place(id), secrets)
}

/// A source's secrets from their stored text, which is always sealed: no version wrote them in
/// clear, so a value in clear is refused rather than read.
pub fn open_source_secrets(sealer: &Sealer, id: &str, stored: &str) -> StoreResult<Map<String, Value>> {
    let json = open_sealed(sealer, SOURCE_SECRETS, &source_place(id), stored.as_bytes())?;
    serde_json::from_slice(&json).map_err(|e| unreadable(SOURCE_SECRETS, e))
}

#[derive(sqlx::FromRow)]
pub struct SourceRow {
    id: String,
    name: String,
    kind: String,
    config: String,
    secrets: String,
    enabled: bool,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl SourceRow {
    /// The source, its secrets opened.
    pub fn decode(self, sealer: &Sealer) -> StoreResult<Source> {
        let row = self;
        let kind = SourceKind::parse(&row.kind)
            .ok_or_else(|| unreadable("sources.kind", format!("unknown kind {:?}", row.kind)))?;
        let secrets = open_source_secrets(sealer, &row.id, &row.secrets)?;
        Ok(Source {
            id: SourceId::from_trusted(row.id),
            name: row.name,
            kind,
            config: from_json("sources.config", &row.config)?,
            secrets,
            enabled: row.enabled,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
