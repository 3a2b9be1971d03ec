//! The audit log: the shared repository ([`crate::repo`]) on this backend, appended through
//! the group writer.

use async_trait::async_trait;
use switchyard_core::audit::{AuditEntry, AuditFilter};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{AuditStore, StoreResult};

use super::SqliteStore;
use super::direct::Binder;
use crate::error::map_direct_err;
use crate::repo::Repo;
use crate::sql;

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // The entries share the next group transaction (and its fsync) with the writes of the
        // requests they record.
        let entries = entries.to_vec();
        self.group.write(entries.len(), false, move |conn, _| insert_entries(conn, &entries)).await
    }

    async fn list_audit_log(
        &self,
        filter: &AuditFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<AuditEntry>> {
        Repo(self).list_audit_log(filter, request).await
    }
}

/// One statement per entry: run on the handle a statement costs little, and one text is
/// prepared once per group where a multi-row one would be prepared for every group size.
fn insert_entries(conn: &rusqlite::Connection, entries: &[AuditEntry]) -> StoreResult<()> {
    let mut statement = conn.prepare_cached(&sql::insert_audit_entries(1)).map_err(map_direct_err)?;
    for entry in entries {
        let mut binder = Binder::new(&mut statement);
        binder.bind(entry.id.as_str())?;
        binder.bind(entry.at)?;
        binder.bind(entry.actor.as_str())?;
        binder.bind(entry.role.as_str())?;
        binder.bind(entry.action.as_str())?;
        binder.bind(entry.method.as_str())?;
        binder.bind(entry.route.as_str())?;
        binder.bind(entry.resource.kind.as_str())?;
        binder.bind(entry.resource.id.as_deref())?;
        binder.bind(entry.request_id.as_str())?;
        binder.bind(i64::from(entry.outcome.status))?;
        binder.bind(entry.outcome.success)?;
        statement.raw_execute().map_err(map_direct_err)?;
    }
    Ok(())
}
