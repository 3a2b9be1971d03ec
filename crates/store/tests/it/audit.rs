//! The audit log: appended in order, listed by page or cursor, filtered.

use switchyard_core::api_key::Role;
use switchyard_core::audit::{AuditEntry, AuditEntryId, AuditFilter, AuditOutcome, AuditResource};
use switchyard_core::page::{Cursor, ListRequest};

use crate::support::{T0, TestDb};

pub fn entry(n: i64, actor: &str, action: &str, status: u16) -> AuditEntry {
    AuditEntry {
        id: AuditEntryId::generate(),
        at: T0 + n,
        actor: actor.to_owned(),
        role: Role::Operator,
        action: action.to_owned(),
        method: "POST".into(),
        route: "/v1/destinations".into(),
        resource: AuditResource { kind: "destination".into(), id: (n % 2 == 0).then(|| format!("dst_{n}")) },
        request_id: format!("req-{n}"),
        outcome: AuditOutcome::of_status(status),
        seq: 0,
    }
}

pub async fn audit_entries_round_trip_in_append_order(db: TestDb) {
    let store = db.store.as_ref();
    let first =
        vec![entry(0, "key_a", "destination.create", 201), entry(1, "key_b", "destination.update", 412)];
    store.append_audit_entries(&first).await.unwrap();
    store.append_audit_entries(&[]).await.unwrap();
    store.append_audit_entries(&[entry(2, "key_a", "destination.delete", 204)]).await.unwrap();

    let listing = store.list_audit_log(&AuditFilter::default(), ListRequest::default()).await.unwrap();
    assert_eq!(listing.total, Some(3));
    assert_eq!(listing.next_cursor, None);
    let actions: Vec<&str> = listing.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["destination.create", "destination.update", "destination.delete"]);
    let stored = &listing.items[1];
    assert_eq!(AuditEntry { seq: 0, ..stored.clone() }, first[1]);
    assert!(!stored.outcome.success);
    assert!(listing.items.windows(2).all(|w| w[0].seq < w[1].seq));
}

pub async fn audit_log_pages_by_cursor_and_filters(db: TestDb) {
    let store = db.store.as_ref();
    let entries: Vec<AuditEntry> = (0..25)
        .map(|n| {
            let actor = if n % 3 == 0 { "key_admin" } else { "key_ops" };
            let action = if n % 5 == 0 { "destination.delete" } else { "destination.create" };
            entry(n, actor, action, 200)
        })
        .collect();
    store.append_audit_entries(&entries).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store
            .list_audit_log(&AuditFilter::default(), ListRequest::After { after, per_page: 10 })
            .await
            .unwrap();
        assert_eq!(page.total, None, "cursor pages carry no totals");
        seen.extend(page.items.iter().map(|e| e.request_id.clone()));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|n| format!("req-{n}")).collect();
    assert_eq!(seen, expected, "every entry once, in order");

    let by_actor = AuditFilter { actor: Some("key_admin".into()), ..AuditFilter::default() };
    let listing =
        store.list_audit_log(&by_actor, ListRequest::Page { page: 1, per_page: 100 }).await.unwrap();
    assert_eq!(listing.total, Some(9));
    assert!(listing.items.iter().all(|e| e.actor == "key_admin"));

    let narrow = AuditFilter {
        actor: Some("key_admin".into()),
        action: Some("destination.delete".into()),
        since: Some(T0 + 1),
        until: Some(T0 + 20),
    };
    let listing = store.list_audit_log(&narrow, ListRequest::default()).await.unwrap();
    let ids: Vec<&str> = listing.items.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids, ["req-15"]);

    let page_two = store
        .list_audit_log(&AuditFilter::default(), ListRequest::Page { page: 2, per_page: 10 })
        .await
        .unwrap();
    assert_eq!(page_two.total, Some(25));
    assert_eq!(page_two.items[0].request_id, "req-10");
    assert!(page_two.next_cursor.is_some(), "numbered pages of an append-only collection carry a cursor too");
}
