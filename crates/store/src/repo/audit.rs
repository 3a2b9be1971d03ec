//! The audit log: appended in batches, listed in append order by page or cursor.

use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::audit::{AuditEntry, AuditFilter};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::StoreResult;

use super::{Args, Backend, Conn, Db, Repo, Row};
use crate::error::map_err;
use crate::rows::{AuditRow, decode_all};
use crate::sql;

/// Audit entries in one `INSERT`, at most: SQLite finds a numbered parameter by a linear walk,
/// so a statement's cost grows with the square of its parameters (twelve a row).
const AUDIT_ROWS_PER_INSERT: usize = 32;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> Option<&'q str>: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> bool: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> AuditRow: FromRow<'r, Row<B>>,
{
    pub(crate) async fn append_audit_entries(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.0.begin_write().await?;
        Self::insert_audit_entries(&mut tx, entries).await?;
        tx.commit().await.map_err(map_err)
    }

    /// Writes `entries` on `conn`, inside the caller's transaction.
    pub(crate) async fn insert_audit_entries(conn: &mut Conn<B>, entries: &[AuditEntry]) -> StoreResult<()> {
        // A statement costs a round trip to the connection, more than its rows: the entries of
        // one group go in a few multi-row statements.
        for chunk in entries.chunks(AUDIT_ROWS_PER_INSERT) {
            let mut query = sqlx::query(AssertSqlSafe(sql::insert_audit_entries(chunk.len())));
            for entry in chunk {
                query = query
                    .bind(entry.id.as_str())
                    .bind(entry.at)
                    .bind(entry.actor.as_str())
                    .bind(entry.role.as_str())
                    .bind(entry.action.as_str())
                    .bind(entry.method.as_str())
                    .bind(entry.route.as_str())
                    .bind(entry.resource.kind.as_str())
                    .bind(entry.resource.id.as_deref())
                    .bind(entry.request_id.as_str())
                    .bind(i64::from(entry.outcome.status))
                    .bind(entry.outcome.success);
            }
            query.execute(&mut *conn).await.map_err(map_err)?;
        }
        Ok(())
    }

    pub(crate) async fn list_audit_log(
        &self,
        filter: &AuditFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<AuditEntry>> {
        self.list_page(
            request,
            |after, limit, offset| sql::list_audit_log(filter, after, limit, offset),
            || sql::count_audit_log(filter),
            decode_all::<AuditRow, AuditEntry>,
            |entry| entry.seq,
        )
        .await
    }
}
