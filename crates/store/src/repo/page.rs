//! Listings by numbered page or keyset cursor, the one way every append-ordered collection is
//! paged: one item more than the page tells whether another follows, and a numbered page
//! counts its total on the same snapshot.

use sqlx::{AssertSqlSafe, Encode, Executor, FromRow, IntoArguments, Type};
use switchyard_core::page::{Cursor, ListRequest, Listing};
use switchyard_core::store::StoreResult;

use super::{Args, Backend, Conn, Db, Repo, Row, bind_as, bind_scalar, count};
use crate::error::map_err;
use crate::sql::Assembled;

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
{
    /// One page of a collection in sequence order: `list` assembles the page's query from the
    /// keyset start (`after`), `LIMIT` and `OFFSET`, `total` the count of a numbered page;
    /// `decode` reads the rows, and `seq` is an item's sequence number, the next cursor.
    pub(super) async fn list_page<R, T>(
        &self,
        request: ListRequest,
        list: impl FnOnce(Option<i64>, i64, i64) -> Assembled,
        total: impl FnOnce() -> Assembled,
        decode: impl FnOnce(Vec<R>) -> StoreResult<Vec<T>>,
        seq: impl Fn(&T) -> i64,
    ) -> StoreResult<Listing<T>>
    where
        R: for<'r> FromRow<'r, Row<B>> + Send + Unpin,
    {
        let per_page = request.per_page().max(1);
        // One item more than the page tells whether another page follows.
        let limit = i64::from(per_page) + 1;
        let (after, offset) = match request {
            ListRequest::Page { .. } => (None, i64::try_from(request.offset()).unwrap_or(i64::MAX)),
            ListRequest::After { after, .. } => (Some(after.map_or(0, Cursor::seq)), 0),
        };
        let mut tx = self.0.begin_read().await?;
        let query = list(after, limit, offset);
        let rows = bind_as(sqlx::query_as::<_, R>(AssertSqlSafe(query.sql)), query.binds)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        let total = match request {
            ListRequest::Page { .. } => {
                let query = total();
                let n: i64 = bind_scalar(sqlx::query_scalar(AssertSqlSafe(query.sql)), query.binds)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(map_err)?;
                Some(count(n))
            }
            ListRequest::After { .. } => None,
        };
        tx.commit().await.map_err(map_err)?;

        let mut items = decode(rows)?;
        let page_len = usize::try_from(per_page).unwrap_or(usize::MAX);
        let more = items.len() > page_len;
        items.truncate(page_len);
        let next_cursor = if more { items.last().map(|item| Cursor::at(seq(item))) } else { None };
        Ok(Listing { items, total, next_cursor })
    }
}
