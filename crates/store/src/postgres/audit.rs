//! The audit log: the shared repository ([`crate::repo`]) on this backend.

use async_trait::async_trait;
use switchyard_core::audit::{AuditEntry, AuditFilter};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{AuditStore, StoreResult};

use super::PgStore;
use crate::repo::Repo;

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        Repo(self).append_audit_entries(entries).await
    }

    async fn list_audit_log(
        &self,
        filter: &AuditFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<AuditEntry>> {
        Repo(self).list_audit_log(filter, request).await
    }
}
