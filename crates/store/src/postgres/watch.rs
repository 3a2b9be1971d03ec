//! Wake-ups across nodes: a `LISTEN` on a connection of its own, forwarding each notification
//! of the schema's channel (`work_channel!`) to the engine. The engine's poll stays the safety net for a
//! notification lost while the connection was down.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use switchyard_core::store::{StoreResult, WorkSignal, WorkWatch};
use tokio::task::JoinHandle;

use crate::error::map_err;

/// How long the listener waits before trying again after an error it cannot recover from.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The listening task; dropping it stops the task and closes its connection.
#[derive(Debug)]
pub struct Watch(JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl WorkWatch for Watch {}

/// Connects, listens, and forwards every notification to `signal` from a task of its own.
/// Fails when the first connection or `LISTEN` fails, so a misconfiguration is seen at start.
pub async fn start(options: PgConnectOptions, signal: WorkSignal) -> StoreResult<Watch> {
    // A pool of one, so the listener reconnects through it without taking from the main pool.
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.map_err(map_err)?;
    let channel: String =
        sqlx::query_scalar(concat!("SELECT ", work_channel!())).fetch_one(&pool).await.map_err(map_err)?;
    let mut listener = PgListener::connect_with(&pool).await.map_err(map_err)?;
    listener.listen(&channel).await.map_err(map_err)?;
    let task = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => signal(),
                // The connection dropped and was re-established: what was sent meanwhile is
                // lost, so look once as if told.
                Ok(None) => {
                    tracing::warn!("the LISTEN connection was lost and re-established");
                    signal();
                }
                Err(error) => {
                    tracing::warn!(%error, "listening for work from other nodes failed; retrying");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    });
    Ok(Watch(task))
}
