//! The outbox as both backends read and change it alike: a delivery, a page of them, its
//! attempts, the dead count, the next due time, and the operator's retry and replay and a
//! node's lease hand-back. Claims, settling, lease renewal and pruning stay with each backend:
//! they lock, batch and commit differently on purpose.

use sqlx::{Encode, Executor, FromRow, IntoArguments, Type};
use std::collections::HashMap;

use switchyard_core::delivery::{Attempt, Delivery, DeliveryFilter, DeliveryStatus, DeliveryTally, NextStep};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::page::{ListRequest, Listing};
use switchyard_core::store::{StoreError, StoreResult};
use switchyard_core::time::Millis;

use super::{Args, Backend, Conn, Db, Repo, Row, bind, bind_scalar, count};
use crate::error::{map_err, unreadable};
use crate::rows::{AttemptRow, DeliveryRow, decode_all};
use crate::sql::deliveries as q;

/// Decodes rows that carry their creation sequence, keeping it alongside.
pub(crate) fn decode_sequenced(rows: Vec<DeliveryRow>) -> StoreResult<Vec<(i64, Delivery)>> {
    rows.into_iter().map(|row| Ok((row.seq(), Delivery::try_from(row)?))).collect()
}

/// The status and due time a settled delivery moves to.
pub(crate) fn settle_to(next: NextStep) -> (DeliveryStatus, Option<Millis>) {
    match next {
        NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
        NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        NextStep::Dead => (DeliveryStatus::Dead, None),
        NextStep::Filtered => (DeliveryStatus::Filtered, None),
    }
}

impl<B: Backend> Repo<'_, B>
where
    for<'c> &'c mut Conn<B>: Executor<'c, Database = Db<B>>,
    Args<B>: IntoArguments<Db<B>>,
    for<'q> &'q str: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> String: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'q> i64: Encode<'q, Db<B>> + Type<Db<B>>,
    for<'r> (i64,): FromRow<'r, Row<B>>,
    for<'r> (Option<i64>,): FromRow<'r, Row<B>>,
    for<'r> (bool,): FromRow<'r, Row<B>>,
    for<'r> (String, i64): FromRow<'r, Row<B>>,
    for<'r> (String, i64, i64): FromRow<'r, Row<B>>,
    for<'r> (String,): FromRow<'r, Row<B>>,
    for<'r> DeliveryRow: FromRow<'r, Row<B>>,
    for<'r> AttemptRow: FromRow<'r, Row<B>>,
{
    /// Whether a paused or flow-blocked destination has deliveries due at `now`: claims then
    /// go around the held destinations (`CLAIM_AROUND_HELD`) rather than walk their backlog.
    pub(crate) async fn held_backlog(&self, now: Millis) -> StoreResult<bool> {
        sqlx::query_scalar::<_, bool>(q::HELD_BACKLOG)
            .bind(now)
            .fetch_one(self.0.reader())
            .await
            .map_err(map_err)
    }

    /// When the claim that `held` chooses would first find something.
    pub(crate) async fn next_due(&self, now: Millis, held: bool) -> StoreResult<Option<Millis>> {
        let query = if held {
            sqlx::query_scalar::<_, Option<i64>>(q::NEXT_DUE_AROUND_HELD).bind(Millis::MAX).bind(now)
        } else {
            sqlx::query_scalar::<_, Option<i64>>(q::NEXT_DUE_AT)
        };
        query.fetch_one(self.0.reader()).await.map_err(map_err)
    }

    pub(crate) async fn next_due_at(&self, now: Millis) -> StoreResult<Option<Millis>> {
        let held = self.held_backlog(now).await?;
        self.next_due(now, held).await
    }

    /// Which claim to run at `now`, or `None` when it would find nothing: a read, so a wake-up
    /// with nothing due opens no transaction and takes no lock.
    pub(crate) async fn claim_plan(&self, now: Millis) -> StoreResult<Option<ClaimPlan>> {
        let held = self.held_backlog(now).await?;
        let due = self.next_due(now, held).await?;
        Ok(due
            .filter(|due| *due <= now)
            .map(|_| if held { ClaimPlan::AroundHeld } else { ClaimPlan::DueQueue }))
    }

    pub(crate) async fn delivery_tallies(&self) -> StoreResult<HashMap<DestinationId, DeliveryTally>> {
        let reader = self.0.reader();
        let pending = sqlx::query_as::<_, (String, i64, i64)>(q::PENDING_TALLIES)
            .fetch_all(reader)
            .await
            .map_err(map_err)?;
        let dead =
            sqlx::query_as::<_, (String, i64)>(q::DEAD_TALLIES).fetch_all(reader).await.map_err(map_err)?;
        let succeeded = sqlx::query_scalar::<_, String>(q::SUCCEEDED_DESTINATIONS)
            .fetch_all(reader)
            .await
            .map_err(map_err)?;
        let mut tallies: HashMap<DestinationId, DeliveryTally> = HashMap::new();
        let to_u64 = |n: i64| u64::try_from(n).unwrap_or(0);
        for (destination, n, first_created_at) in pending {
            let tally = tallies.entry(DestinationId::from_trusted(destination)).or_default();
            tally.pending = to_u64(n);
            tally.oldest_pending_at = Some(first_created_at);
        }
        for (destination, n) in dead {
            tallies.entry(DestinationId::from_trusted(destination)).or_default().dead = to_u64(n);
        }
        for destination in succeeded {
            tallies.entry(DestinationId::from_trusted(destination)).or_default().ever_succeeded = true;
        }
        Ok(tallies)
    }

    pub(crate) async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>> {
        sqlx::query_as::<_, DeliveryRow>(q::SELECT_DELIVERY)
            .bind(id.as_str())
            .fetch_optional(self.0.reader())
            .await
            .map_err(map_err)?
            .map(Delivery::try_from)
            .transpose()
    }

    pub(crate) async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        request: ListRequest,
    ) -> StoreResult<Listing<Delivery>> {
        let listing = self
            .list_page(
                request,
                |after, limit, offset| q::list(filter, after, limit, offset),
                || q::count(filter),
                decode_sequenced,
                |(seq, _)| *seq,
            )
            .await?;
        Ok(listing.map(|(_, delivery)| delivery))
    }

    pub(crate) async fn attempts_of(&self, id: &DeliveryId) -> StoreResult<Vec<Attempt>> {
        let rows = sqlx::query_as::<_, AttemptRow>(q::ATTEMPTS_OF)
            .bind(id.as_str())
            .fetch_all(self.0.reader())
            .await
            .map_err(map_err)?;
        decode_all(rows)
    }

    pub(crate) async fn count_dead(&self, filter: &DeliveryFilter) -> StoreResult<u64> {
        let query = q::count_dead(filter);
        let n: i64 = bind_scalar(sqlx::query_scalar(sqlx::AssertSqlSafe(query.sql)), query.binds)
            .fetch_one(self.0.reader())
            .await
            .map_err(map_err)?;
        Ok(count(n))
    }

    pub(crate) async fn release_leases(&self, owner: &str, now: Millis) -> StoreResult<u64> {
        let mut tx = self.0.begin_write().await?;
        let released =
            sqlx::query(q::RELEASE_LEASES).bind(now).bind(owner).execute(&mut *tx).await.map_err(map_err)?;
        if B::rows_affected(&released) > 0 {
            // Handed back by a node that stops: the others take them at once.
            B::notify_work(&mut tx).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(B::rows_affected(&released))
    }

    pub(crate) async fn retry_delivery(&self, id: &DeliveryId, now: Millis) -> StoreResult<Option<Delivery>> {
        let mut tx = self.0.begin_write().await?;
        let retried = sqlx::query_as::<_, DeliveryRow>(q::RETRY_DELIVERY)
            .bind(now)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(row) = retried {
            B::notify_work(&mut tx).await?;
            tx.commit().await.map_err(map_err)?;
            return Delivery::try_from(row).map(Some);
        }
        // Nothing changed: tell a missing delivery from one in a state that cannot retry.
        let status: Option<String> = sqlx::query_scalar(q::DELIVERY_STATUS)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.rollback().await.map_err(map_err)?;
        let Some(status) = status else {
            return Ok(None);
        };
        Err(match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::InFlight) => StoreError::Conflict(format!(
                "delivery {id} is in flight; retry it once its attempt is recorded"
            )),
            Some(DeliveryStatus::Succeeded) => {
                StoreError::Conflict(format!("delivery {id} has succeeded; there is nothing to retry"))
            }
            Some(DeliveryStatus::Filtered) => StoreError::Conflict(format!(
                "delivery {id} was filtered out by its subscription; there is nothing to retry"
            )),
            _ => unreadable("deliveries.status", format!("unexpected status {status:?} for a retry")),
        })
    }

    pub(crate) async fn replay_dead(
        &self,
        filter: &DeliveryFilter,
        now: Millis,
        limit: u32,
    ) -> StoreResult<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let query = q::replay_dead(filter, now, i64::from(limit));
        let mut tx = self.0.begin_write().await?;
        let replayed = bind(sqlx::query(sqlx::AssertSqlSafe(query.sql)), query.binds)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if B::rows_affected(&replayed) > 0 {
            B::notify_work(&mut tx).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(B::rows_affected(&replayed))
    }
}

/// The claim a backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimPlan {
    /// The one due queue, in order (`CLAIM`).
    DueQueue,
    /// The destinations that may send, each its own queue (`CLAIM_AROUND_HELD`): a paused or
    /// blocked destination has due deliveries, which the due queue would walk.
    AroundHeld,
}
