use switchyard_core::store::{IdempotencyClaim, StoredResponse};
use switchyard_core::time::Millis;

use crate::support::{T0, TestDb};

const DAY: i64 = 86_400_000;

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        location: Some("/v1/destinations/dst_1".into()),
        // Not UTF-8: the body is kept byte for byte.
        body: vec![0x7b, 0x00, 0xff, 0xfe, 0x7d],
    }
}

pub async fn claims_progress_to_a_replayable_response(db: TestDb) {
    let store = db.store.as_ref();
    let claim = |hash: &'static str, scope: &'static str| {
        store.claim_idempotency_key(scope, "k1", hash, T0, T0 - DAY, T0 - DAY)
    };

    assert_eq!(claim("h1", "key_a").await.unwrap(), IdempotencyClaim::Claimed);
    assert_eq!(
        claim("h2", "key_a").await.unwrap(),
        IdempotencyClaim::InProgress { request_hash: "h1".into() },
        "the first claim's hash is reported, so the caller can tell a replay from a clash"
    );
    // Scopes (one per caller) do not share keys.
    assert_eq!(claim("h1", "key_b").await.unwrap(), IdempotencyClaim::Claimed);

    store.complete_idempotency_key("key_a", "k1", T0, &response()).await.unwrap();
    assert_eq!(
        claim("h1", "key_a").await.unwrap(),
        IdempotencyClaim::Completed { request_hash: "h1".into(), response: response() }
    );
    let empty = StoredResponse { status: 204, location: None, body: Vec::new() };
    store.complete_idempotency_key("key_b", "k1", T0, &empty).await.unwrap();
    assert_eq!(
        claim("h1", "key_b").await.unwrap(),
        IdempotencyClaim::Completed { request_hash: "h1".into(), response: empty }
    );
}

pub async fn released_keys_can_be_claimed_again(db: TestDb) {
    let store = db.store.as_ref();
    assert_eq!(
        store.claim_idempotency_key("s", "k", "h1", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.release_idempotency_key("s", "k", T0).await.unwrap();
    assert_eq!(
        store.claim_idempotency_key("s", "k", "h2", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store.claim_idempotency_key("s", "k", "h3", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::InProgress { request_hash: "h2".into() }
    );
    // Releasing what is not there is not an error.
    store.release_idempotency_key("s", "unknown", T0).await.unwrap();
}

pub async fn stale_records_are_forgotten_at_the_cutoff(db: TestDb) {
    let store = db.store.as_ref();
    // An abandoned claim: its request crashed before completing or releasing it.
    assert_eq!(
        store.claim_idempotency_key("s", "crashed", "h1", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store.claim_idempotency_key("s", "crashed", "h2", T0 + 10, T0, T0).await.unwrap(),
        IdempotencyClaim::InProgress { request_hash: "h1".into() },
        "a record created exactly at the cutoff is kept"
    );
    assert_eq!(
        store.claim_idempotency_key("s", "crashed", "h2", T0 + 10, T0 + 1, T0 + 1).await.unwrap(),
        IdempotencyClaim::Claimed
    );

    // An expired response.
    assert_eq!(
        store.claim_idempotency_key("s", "done", "h1", T0, 0, 0).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    store.complete_idempotency_key("s", "done", T0, &response()).await.unwrap();
    assert!(matches!(
        store.claim_idempotency_key("s", "done", "h1", T0 + DAY - 1, T0, T0).await.unwrap(),
        IdempotencyClaim::Completed { .. }
    ));
    assert_eq!(
        store.claim_idempotency_key("s", "done", "h9", T0 + DAY + 1, T0 + 1, T0 + 1).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert_eq!(
        store.claim_idempotency_key("s", "done", "h1", T0 + DAY + 2, T0 + 1, T0 + 1).await.unwrap(),
        IdempotencyClaim::InProgress { request_hash: "h9".into() },
        "the new claim starts a new record"
    );
}

/// A claim still without a response is forgotten at its own, earlier cutoff (its request was
/// cut off by a crash); a stored response only at the retention's.
pub async fn abandoned_claims_are_forgotten_before_responses_expire(db: TestDb) {
    let store = db.store.as_ref();
    const ABANDONED: Millis = 600_000;
    for key in ["running", "answered"] {
        assert_eq!(
            store.claim_idempotency_key("s", key, "h1", T0, 0, 0).await.unwrap(),
            IdempotencyClaim::Claimed
        );
    }
    store.complete_idempotency_key("s", "answered", T0, &response()).await.unwrap();

    let later = T0 + ABANDONED + 1;
    let retry = |key: &'static str| {
        store.claim_idempotency_key("s", key, "h1", later, later - DAY, later - ABANDONED)
    };
    assert_eq!(retry("running").await.unwrap(), IdempotencyClaim::Claimed, "the crashed claim is taken over");
    // Should the first request still finish, it leaves the retry's claim alone.
    store.complete_idempotency_key("s", "running", T0, &response()).await.unwrap();
    store.release_idempotency_key("s", "running", T0).await.unwrap();
    assert_eq!(
        retry("running").await.unwrap(),
        IdempotencyClaim::InProgress { request_hash: "h1".into() },
        "the retry's claim stands, without the first one's response"
    );
    assert!(
        matches!(retry("answered").await.unwrap(), IdempotencyClaim::Completed { .. }),
        "the response is kept"
    );
}
