//! The plans PostgreSQL picks for the claim and for deep keyset pages, on a table of typical
//! shape (mostly finished rows, a few due ones) with statistics: index scans, never a
//! sequential scan of `deliveries` or `events`. The plans are quoted in docs/internals/store.md.
//!
//! Runs against `SWITCHYARD_TEST_POSTGRES_URL` (default the local test database) in a schema
//! of its own; fails under `CI=true` when PostgreSQL is unreachable, and is skipped otherwise.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use switchyard_core::delivery::DeliveryFilter;
use switchyard_core::event::{EventFilter, EventType};
use switchyard_core::id::DestinationId;

use crate::sql::{self, Assembled, Bind, deliveries as q, settle};

const ROWS: i64 = 50_000;

pub(super) async fn admin() -> Option<(PgConnection, String)> {
    let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match PgConnection::connect(&url).await {
        Ok(conn) => Some((conn, url)),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {url} is unreachable under CI=true: {error}")
        }
        Err(error) => {
            eprintln!("\n!!! SKIPPED: PostgreSQL at {url} is unreachable ({error}) !!!\n");
            None
        }
    }
}

/// The text of `EXPLAIN` for `query`, its parameters bound.
async fn explain(conn: &mut PgConnection, query: &Assembled) -> String {
    let mut explain = sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", query.sql)));
    for bind in &query.binds {
        explain = match bind {
            Bind::Text(text) => explain.bind(text.clone()),
            Bind::Int(n) => explain.bind(*n),
        };
    }
    explain.fetch_all(conn).await.expect("explain").join("\n")
}

/// No sequential scan of the big tables, and each of `indexes` used.
fn assert_uses(plan: &str, indexes: &[&str]) {
    assert!(!plan.contains("Seq Scan on deliveries"), "a sequential scan:\n{plan}");
    assert!(!plan.contains("Seq Scan on events"), "a sequential scan:\n{plan}");
    for index in indexes {
        assert!(plan.contains(&format!("using {index} on")), "{index} is not used:\n{plan}");
    }
}

#[tokio::test]
async fn the_claim_and_deep_keyset_pages_use_indexes() {
    let Some((mut conn, _)) = admin().await else { return };
    let schema = format!("sy_plans_{:016x}", rand::random::<u64>());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.expect("schema");
    sqlx::query(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut conn)
        .await
        .expect("path");
    super::MIGRATOR.run(&mut conn).await.expect("migrate");
    for seed in [
        "INSERT INTO destinations (id, name, kind, config, secrets, timeout_ms, connect_timeout_ms, \
         retry, rate_limit, circuit_breaker, enabled, version, created_at, updated_at) \
         SELECT 'dst_' || i, 'd', 'http', '{}', '{}', 1, 1, '{}', NULL, '{}', i % 5 > 0, 1, 0, 0 \
         FROM generate_series(1, 40) AS i"
            .to_owned(),
        format!(
            "INSERT INTO events (event_id, event_type, timestamp, payload, correlation_id, source, \
             received_at, content_hash) \
             SELECT 'e' || i, 'type.' || (i % 20), i, '{{}}', 'c' || (i % 100), 'api', i, 'h' \
             FROM generate_series(1, {ROWS}) AS i"
        ),
        "INSERT INTO deliveries (id, event_id, subscription_id, destination_id, status, \
         attempt_count, next_attempt_at, lease_owner, lease_expires_at, ordering_key, ordered, \
         block_on_dead, created_at, updated_at) \
         SELECT 'd' || seq, event_id, 'sub_' || (seq % 2), 'dst_' || (seq % 40 + 1), \
         CASE WHEN seq % 5 = 0 THEN 'pending' WHEN seq % 97 = 0 THEN 'in_flight' \
              WHEN seq % 89 = 0 THEN 'dead' ELSE 'succeeded' END, \
         1, CASE WHEN seq % 5 = 0 OR seq % 97 = 0 THEN seq END, \
         CASE WHEN seq % 97 = 0 THEN 'node' END, CASE WHEN seq % 97 = 0 THEN seq END, \
         CASE WHEN seq % 3 = 0 THEN 'k' || (seq % 10) END, seq % 3 = 0, seq % 6 = 0, seq, seq \
         FROM events"
            .to_owned(),
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, outcome) \
         SELECT id, 1, seq, 1, 'succeeded' FROM deliveries WHERE status <> 'pending'"
            .to_owned(),
        "ANALYZE".to_owned(),
    ] {
        sqlx::query(AssertSqlSafe(seed)).execute(&mut conn).await.expect("seed");
    }

    // Half-way: a page that reads from the middle of the tables.
    let deep = ROWS / 2;
    let claim = Assembled {
        sql: q::CLAIM_SKIP_LOCKED.to_owned(),
        binds: vec![Bind::Text("node".into()), Bind::Int(deep + 10), Bind::Int(deep), Bind::Int(128)],
    };
    let claim = explain(&mut conn, &claim).await;
    let around_held = Assembled {
        sql: q::CLAIM_SKIP_LOCKED_AROUND_HELD.to_owned(),
        binds: vec![Bind::Text("node".into()), Bind::Int(deep + 10), Bind::Int(deep), Bind::Int(128)],
    };
    let around_held = explain(&mut conn, &around_held).await;
    let held_backlog =
        explain(&mut conn, &Assembled { sql: q::HELD_BACKLOG.to_owned(), binds: vec![Bind::Int(deep)] })
            .await;
    let due_around_held = Assembled {
        sql: q::NEXT_DUE_AROUND_HELD.to_owned(),
        binds: vec![Bind::Int(i64::MAX), Bind::Int(deep)],
    };
    let due_around_held = explain(&mut conn, &due_around_held).await;
    let pages = [
        explain(&mut conn, &sql::list_events(&EventFilter::default(), Some(deep), 51, 0)).await,
        explain(
            &mut conn,
            &sql::list_events(
                &EventFilter {
                    event_type: Some(EventType::from_trusted("type.3")),
                    ..EventFilter::default()
                },
                Some(deep),
                51,
                0,
            ),
        )
        .await,
        explain(&mut conn, &q::list(&DeliveryFilter::default(), Some(deep), 51, 0)).await,
        explain(
            &mut conn,
            &q::list(
                &DeliveryFilter {
                    destination_id: Some(DestinationId::from_trusted("dst_7")),
                    ..DeliveryFilter::default()
                },
                Some(deep),
                51,
                0,
            ),
        )
        .await,
    ];
    let settle = settle_plans(&mut conn).await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop");
    conn.close().await.expect("close");

    if std::env::var("SWITCHYARD_SHOW_PLANS").is_ok() {
        eprintln!("CLAIM:\n{claim}\n");
        eprintln!(
            "AROUND HELD:\n{around_held}\n\nHELD:\n{held_backlog}\n\nDUE AROUND HELD:\n{due_around_held}\n"
        );
        for page in &pages {
            eprintln!("PAGE:\n{page}\n");
        }
        for plan in &settle {
            eprintln!("SETTLE:\n{plan}\n");
        }
    }
    // `destinations` (a few rows) may be read whole; `deliveries` never is. With a backlog the
    // due branch reads its index in order and stops at the limit: only the merge is sorted.
    assert_uses(&claim, &["deliveries_status_next_attempt_at", "deliveries_status_lease_expires_at"]);
    assert_eq!(claim.matches("LockRows").count(), 2, "each branch locks its rows:\n{claim}");
    let sorted_due = claim
        .lines()
        .any(|l| l.contains("Sort Key:") && l.contains(".next_attempt_at") && !l.contains("due."));
    assert!(!sorted_due, "the due branch is sorted:\n{claim}");
    // Around held destinations: each lane's head and rows are a range of the lanes index.
    let lanes = "deliveries_pending_destination_id_next_attempt_at";
    assert_uses(&around_held, &[lanes, "deliveries_status_lease_expires_at"]);
    assert!(
        !around_held.contains("deliveries_status_next_attempt_at"),
        "the due queue is walked:\n{around_held}"
    );
    assert_eq!(around_held.matches("LockRows").count(), 2, "each branch locks its rows:\n{around_held}");
    assert_uses(&held_backlog, &[lanes]);
    assert_uses(&due_around_held, &[lanes]);
    // A group settle finds each of its deliveries, and each one's last attempt, by a key.
    let [settle, attempts, promote] = settle;
    assert_uses(&settle, &["deliveries_id_key"]);
    assert!(attempts.contains("using attempts_pkey on"), "attempts_pkey is not used:\n{attempts}");
    assert!(!attempts.contains("Seq Scan on attempts"), "a sequential scan:\n{attempts}");
    assert_uses(&promote, &["deliveries_id_key", "deliveries_ordered_key_status_seq"]);
    // A deep page seeks its cursor: the primary key, or the filter's index when that is cheaper.
    assert_uses(&pages[0], &["events_pkey"]);
    assert_uses(&pages[2], &["deliveries_pkey"]);
    for page in &pages {
        assert!(page.contains("Index Cond: (seq > ") || page.contains("(seq > "), "no seek:\n{page}");
        assert!(page.contains("Index Scan using"), "no index:\n{page}");
    }
}

/// The plans of the group settle's statements (`sql::settle`) for a group of three.
async fn settle_plans(conn: &mut PgConnection) -> [String; 3] {
    let ids = vec!["d5", "d10", "d15"];
    let at = vec![1_i64; 3];
    let text = |n: usize| vec![None::<String>; n];
    let settle =
        sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", settle::SETTLE_DELIVERIES)))
            .bind(ids.clone())
            .bind(vec!["node"; 3])
            .bind(vec!["succeeded"; 3])
            .bind(vec![None::<i64>; 3])
            .bind(text(3))
            .bind(at.clone())
            .fetch_all(&mut *conn)
            .await
            .expect("explain the settle")
            .join("\n");
    let attempts =
        sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", settle::INSERT_ATTEMPTS)))
            .bind(ids.clone())
            .bind(at.clone())
            .bind(at.clone())
            .bind(vec!["succeeded"; 3])
            .bind(vec![Some(200_i64); 3])
            .bind(text(3))
            .bind(text(3))
            .fetch_all(&mut *conn)
            .await
            .expect("explain the attempts")
            .join("\n");
    let promote =
        sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", settle::PROMOTE_NEXT_OF_EACH)))
            .bind(ids)
            .bind(at)
            .fetch_all(&mut *conn)
            .await
            .expect("explain the promotion")
            .join("\n");
    [settle, attempts, promote]
}

/// Retention's batches of the audit log and of `Idempotency-Key` records read the oldest rows
/// from the index on their time, however many younger ones are kept.
#[tokio::test]
async fn retention_prunes_read_their_time_indexes() {
    let Some((mut conn, _)) = admin().await else { return };
    let schema = format!("sy_plans_{:016x}", rand::random::<u64>());
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&mut conn).await.expect("schema");
    sqlx::query(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut conn)
        .await
        .expect("path");
    super::MIGRATOR.run(&mut conn).await.expect("migrate");
    for seed in [
        format!(
            "INSERT INTO audit_log (id, at, actor, role, action, method, route, resource_type, \
             request_id, status, success) \
             SELECT 'aud_' || i, i, 'key_a', 'admin', 'destination.create', 'POST', \
             '/v1/destinations', 'destination', 'req', 201, TRUE FROM generate_series(1, {ROWS}) AS i"
        ),
        format!(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at) \
             SELECT 'key_' || (i % 50), 'k' || i, 'h', i FROM generate_series(1, {ROWS}) AS i"
        ),
        "ANALYZE".to_owned(),
    ] {
        sqlx::query(AssertSqlSafe(seed)).execute(&mut conn).await.expect("seed");
    }
    let batch =
        |sql: &str| Assembled { sql: sql.to_owned(), binds: vec![Bind::Int(ROWS / 2), Bind::Int(500)] };
    let audit = explain(&mut conn, &batch(sql::retention::PRUNE_AUDIT_LOG_BY_ARRAY)).await;
    let keys = explain(&mut conn, &batch(sql::retention::PRUNE_IDEMPOTENCY_KEYS_BY_CTID)).await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .expect("drop");
    conn.close().await.expect("close");

    // The batch is a range of the time index, and its rows are then found one by one.
    assert!(audit.contains("using audit_log_at_seq on"), "audit_log_at_seq is not used:\n{audit}");
    assert!(audit.contains("using audit_log_pkey on"), "audit_log_pkey is not used:\n{audit}");
    assert!(!audit.contains("Seq Scan on audit_log"), "a sequential scan:\n{audit}");
    assert!(keys.contains("using idempotency_keys_created_at on"), "the index is not used:\n{keys}");
    assert!(keys.contains("Tid Scan on idempotency_keys"), "no scan by place:\n{keys}");
    assert!(!keys.contains("Seq Scan on idempotency_keys"), "a sequential scan:\n{keys}");
}
