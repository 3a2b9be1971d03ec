//! The four providers whose schemes the hub knows by name: each one's delivery becomes an event
//! with the provider's type and id, its redelivery is a duplicate, and every forgery is a 401
//! that stores nothing.

use reqwest::Method;
use serde_json::json;

use super::{
    GITHUB_SECRET, SHOPIFY_SECRET, STRIPE_SECRET, assert_event, assert_received, assert_refused,
    create_source, event_count, github_headers, github_signature, headers, hex, hmac_sha256, now_secs,
    reference_signer, shopify_headers, shopify_signature, stripe_headers, stripe_mac, webhook, whsec, with,
};
use crate::helpers::spawn_app;

const GITHUB_BODY: &[u8] = br#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5","repository":{"id":1296269,"full_name":"octocat/Hello-World"},"pusher":{"name":"octocat"}}"#;
const GITHUB_DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

#[tokio::test]
async fn a_github_delivery_becomes_one_github_event() {
    let app = spawn_app().await;
    let id =
        create_source(&app, "github", json!({"verification": {"type": "github", "secret": GITHUB_SECRET}}))
            .await;
    let sent = github_headers(GITHUB_SECRET, GITHUB_BODY, "push", GITHUB_DELIVERY);

    assert_received(&webhook(&app, &id, &sent, GITHUB_BODY).await, GITHUB_DELIVERY, false);
    assert_event(&app, GITHUB_DELIVERY, "github.push", GITHUB_BODY, &id).await;
    assert_eq!(event_count(&app).await, 1);

    // GitHub's "Redeliver" sends the same delivery again: a duplicate, nothing new stored.
    assert_received(&webhook(&app, &id, &sent, GITHUB_BODY).await, GITHUB_DELIVERY, true);
    assert_eq!(event_count(&app).await, 1);

    // Another delivery of another event type is another event; GitHub's names are normalised.
    let body = br#"{"action":"opened","number":2}"#;
    let delivery = "9f0c6c52-2f3b-11ef-8d0e-000000000002";
    let sent = github_headers(GITHUB_SECRET, body, "pull_request", delivery);
    assert_received(&webhook(&app, &id, &sent, body).await, delivery, false);
    assert_event(&app, delivery, "github.pull_request", body, &id).await;
    assert_eq!(event_count(&app).await, 2);
}

#[tokio::test]
async fn github_forgeries_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let id =
        create_source(&app, "github", json!({"verification": {"type": "github", "secret": GITHUB_SECRET}}))
            .await;
    let good = github_headers(GITHUB_SECRET, GITHUB_BODY, "push", GITHUB_DELIVERY);
    let mac = hex(&hmac_sha256(GITHUB_SECRET.as_bytes(), GITHUB_BODY));
    let tampered =
        GITHUB_BODY.to_vec().into_iter().map(|b| if b == b'6' { b'7' } else { b }).collect::<Vec<_>>();

    let forgeries = [
        (
            "a wrong secret",
            github_headers("not the secret", GITHUB_BODY, "push", GITHUB_DELIVERY),
            GITHUB_BODY.to_vec(),
        ),
        ("no signature header", with(good.clone(), "x-hub-signature-256", None), GITHUB_BODY.to_vec()),
        ("a tampered body under the original's signature", good.clone(), tampered),
        (
            "the MAC without its sha256= label",
            with(good.clone(), "x-hub-signature-256", Some(&mac)),
            GITHUB_BODY.to_vec(),
        ),
        (
            "the MAC under the legacy sha1= label",
            with(good.clone(), "x-hub-signature-256", Some(&format!("sha1={mac}"))),
            GITHUB_BODY.to_vec(),
        ),
        (
            "only the legacy X-Hub-Signature header",
            with(
                with(good.clone(), "x-hub-signature-256", None),
                "x-hub-signature",
                Some(&github_signature(GITHUB_SECRET, GITHUB_BODY)),
            ),
            GITHUB_BODY.to_vec(),
        ),
        (
            "a truncated MAC",
            with(good.clone(), "x-hub-signature-256", Some(&format!("sha256={}", &mac[..32]))),
            GITHUB_BODY.to_vec(),
        ),
    ];
    for (what, sent, body) in forgeries {
        assert_refused(&webhook(&app, &id, &sent, &body).await, what);
    }

    // An admin's bearer token is no signature.
    let bearer = app
        .send(
            app.request(Method::POST, &format!("/v1/sources/{id}/webhook"))
                .header("x-github-event", "push")
                .header("x-github-delivery", GITHUB_DELIVERY)
                .body(GITHUB_BODY.to_vec()),
        )
        .await;
    assert_refused(&bearer, "an admin token without a signature");
    assert_eq!(event_count(&app).await, 0, "a refused webhook stores nothing");
    app.get(&format!("/v1/events/{GITHUB_DELIVERY}")).await.assert_error(404, "not_found");
}

const STRIPE_BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":"2023-10-16","created":1686089970,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_3NG8Dt2eZvKYlo2C1fLbMbDD","object":"payment_intent","amount":2000,"currency":"usd"}},"livemode":false}"#;
const STRIPE_EVENT: &str = "evt_1NG8Du2eZvKYlo2CUI79vXWy";

#[tokio::test]
async fn a_stripe_event_becomes_one_stripe_event() {
    let app = spawn_app().await;
    let id =
        create_source(&app, "stripe", json!({"verification": {"type": "stripe", "secret": STRIPE_SECRET}}))
            .await;
    let now = now_secs();

    let answer = webhook(&app, &id, &stripe_headers(STRIPE_SECRET, now, STRIPE_BODY), STRIPE_BODY).await;
    assert_received(&answer, STRIPE_EVENT, false);
    assert_event(&app, STRIPE_EVENT, "stripe.payment_intent.succeeded", STRIPE_BODY, &id).await;

    // Stripe retries sign again with a new timestamp: still the same event.
    let retry = webhook(&app, &id, &stripe_headers(STRIPE_SECRET, now - 60, STRIPE_BODY), STRIPE_BODY).await;
    assert_received(&retry, STRIPE_EVENT, true);
    assert_eq!(event_count(&app).await, 1);

    // During a secret roll Stripe sends one v1 per secret; any one matching is enough.
    let body = br#"{"id":"evt_2","object":"event","type":"customer.created","data":{"object":{}}}"#;
    let rolled = format!(
        "t={now},v1={},v1={}",
        stripe_mac("whsec_the_expired_secret", now, body),
        stripe_mac(STRIPE_SECRET, now, body)
    );
    let answer = webhook(&app, &id, &headers(&[("stripe-signature", &rolled)]), body).await;
    assert_received(&answer, "evt_2", false);
    assert_event(&app, "evt_2", "stripe.customer.created", body, &id).await;
}

#[tokio::test]
async fn stripe_forgeries_stale_signatures_and_downgrades_are_refused() {
    let app = spawn_app().await;
    let id =
        create_source(&app, "stripe", json!({"verification": {"type": "stripe", "secret": STRIPE_SECRET}}))
            .await;
    let now = now_secs();
    let stale = now - 301;
    let signature = |value: String| headers(&[("stripe-signature", &value)]);
    let tampered = String::from_utf8_lossy(STRIPE_BODY).replace("2000", "1").into_bytes();
    // The MAC of the body keyed with the secret without its `whsec_` (a decoding Stripe never does).
    let undecorated = STRIPE_SECRET.trim_start_matches("whsec_");

    let forgeries = [
        ("a wrong secret", stripe_headers("whsec_not_the_secret", now, STRIPE_BODY), STRIPE_BODY.to_vec()),
        (
            "no Stripe-Signature header",
            headers(&[("content-type", "application/json")]),
            STRIPE_BODY.to_vec(),
        ),
        (
            "a tampered body under the original's signature",
            stripe_headers(STRIPE_SECRET, now, STRIPE_BODY),
            tampered,
        ),
        (
            "a right MAC over a timestamp more than 5 minutes old",
            stripe_headers(STRIPE_SECRET, stale, STRIPE_BODY),
            STRIPE_BODY.to_vec(),
        ),
        (
            "a right MAC from the future beyond the tolerance",
            stripe_headers(STRIPE_SECRET, now + 360, STRIPE_BODY),
            STRIPE_BODY.to_vec(),
        ),
        (
            "an old signature replayed under a fresh t",
            signature(format!("t={now},v1={}", stripe_mac(STRIPE_SECRET, stale, STRIPE_BODY))),
            STRIPE_BODY.to_vec(),
        ),
        (
            "a downgrade: only a v0 with the right MAC",
            signature(format!("t={now},v0={}", stripe_mac(STRIPE_SECRET, now, STRIPE_BODY))),
            STRIPE_BODY.to_vec(),
        ),
        (
            "a right v0 beside a wrong v1",
            signature(format!("t={now},v0={},v1=00ff", stripe_mac(STRIPE_SECRET, now, STRIPE_BODY))),
            STRIPE_BODY.to_vec(),
        ),
        (
            "no timestamp",
            signature(format!("v1={}", stripe_mac(STRIPE_SECRET, now, STRIPE_BODY))),
            STRIPE_BODY.to_vec(),
        ),
        ("a secret decoded from whsec_", stripe_headers(undecorated, now, STRIPE_BODY), STRIPE_BODY.to_vec()),
    ];
    for (what, sent, body) in forgeries {
        assert_refused(&webhook(&app, &id, &sent, &body).await, what);
    }
    assert_eq!(event_count(&app).await, 0, "a refused webhook stores nothing");
}

#[tokio::test]
async fn a_stripe_tolerance_is_configurable() {
    let app = spawn_app().await;
    let config =
        json!({"verification": {"type": "stripe", "secret": STRIPE_SECRET, "tolerance_ms": 600_000}});
    let id = create_source(&app, "stripe", config).await;
    let eight_minutes_ago = now_secs() - 480;
    let sent = stripe_headers(STRIPE_SECRET, eight_minutes_ago, STRIPE_BODY);
    assert_received(&webhook(&app, &id, &sent, STRIPE_BODY).await, STRIPE_EVENT, false);
    let twelve_minutes_ago = now_secs() - 720;
    let body = br#"{"id":"evt_3","type":"charge.refunded"}"#;
    let sent = stripe_headers(STRIPE_SECRET, twelve_minutes_ago, body);
    assert_refused(&webhook(&app, &id, &sent, body).await, "older than the configured tolerance");
}

const SHOPIFY_BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"199.65","line_items":[{"id":866550311766439020,"quantity":1}]}"#;
const SHOPIFY_WEBHOOK_ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

#[tokio::test]
async fn a_shopify_webhook_becomes_one_shopify_event_with_a_normalised_topic() {
    let app = spawn_app().await;
    let id = create_source(
        &app,
        "shopify",
        json!({"verification": {"type": "shopify", "secret": SHOPIFY_SECRET}}),
    )
    .await;
    let sent = shopify_headers(SHOPIFY_SECRET, SHOPIFY_BODY, "orders/create", SHOPIFY_WEBHOOK_ID);

    assert_received(&webhook(&app, &id, &sent, SHOPIFY_BODY).await, SHOPIFY_WEBHOOK_ID, false);
    assert_event(&app, SHOPIFY_WEBHOOK_ID, "shopify.orders.create", SHOPIFY_BODY, &id).await;
    assert_received(&webhook(&app, &id, &sent, SHOPIFY_BODY).await, SHOPIFY_WEBHOOK_ID, true);
    assert_eq!(event_count(&app).await, 1);

    let body = br#"{"id":1,"title":"Mug"}"#;
    let webhook_id = "0f9c2a5e-1111-4b37-8a5f-bf7d70bcd044";
    let sent = shopify_headers(SHOPIFY_SECRET, body, "products/update", webhook_id);
    assert_received(&webhook(&app, &id, &sent, body).await, webhook_id, false);
    assert_event(&app, webhook_id, "shopify.products.update", body, &id).await;
}

#[tokio::test]
async fn shopify_forgeries_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let id = create_source(
        &app,
        "shopify",
        json!({"verification": {"type": "shopify", "secret": SHOPIFY_SECRET}}),
    )
    .await;
    let good = shopify_headers(SHOPIFY_SECRET, SHOPIFY_BODY, "orders/create", SHOPIFY_WEBHOOK_ID);
    let as_hex = hex(&hmac_sha256(SHOPIFY_SECRET.as_bytes(), SHOPIFY_BODY));
    let forgeries = [
        (
            "a wrong secret",
            shopify_headers("shpss_not_the_secret", SHOPIFY_BODY, "orders/create", SHOPIFY_WEBHOOK_ID),
            SHOPIFY_BODY.to_vec(),
        ),
        ("no signature header", with(good.clone(), "x-shopify-hmac-sha256", None), SHOPIFY_BODY.to_vec()),
        (
            "a tampered body under the original's signature",
            good.clone(),
            br#"{"id":820982911946154508}"#.to_vec(),
        ),
        (
            "the MAC in hex instead of base64",
            with(good.clone(), "x-shopify-hmac-sha256", Some(&as_hex)),
            SHOPIFY_BODY.to_vec(),
        ),
        (
            "the signature of another body",
            with(good.clone(), "x-shopify-hmac-sha256", Some(&shopify_signature(SHOPIFY_SECRET, b"{}"))),
            SHOPIFY_BODY.to_vec(),
        ),
    ];
    for (what, sent, body) in forgeries {
        assert_refused(&webhook(&app, &id, &sent, &body).await, what);
    }
    assert_eq!(event_count(&app).await, 0, "a refused webhook stores nothing");
}

const SW_BODY: &[u8] = br#"{"type":"invoice.paid","timestamp":"2024-05-01T10:00:00Z","data":{"invoice_id":"in_42","amount":1200}}"#;
const SW_MSG: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";

fn sw_secret() -> String {
    whsec(b"standard webhooks test secret 32")
}

#[tokio::test]
async fn a_standard_webhooks_message_signed_by_the_reference_library_becomes_one_event() {
    let Some(signer) =
        reference_signer("a_standard_webhooks_message_signed_by_the_reference_library_becomes_one_event")
    else {
        return;
    };
    let app = spawn_app().await;
    let secret = sw_secret();
    let id =
        create_source(&app, "svix", json!({"verification": {"type": "standard_webhooks", "secret": secret}}))
            .await;
    let now = now_secs();

    let sent = signer.headers(&secret, SW_MSG, now, SW_BODY);
    assert_received(&webhook(&app, &id, &sent, SW_BODY).await, SW_MSG, false);
    assert_event(&app, SW_MSG, "invoice.paid", SW_BODY, &id).await;

    // A retry is the same message id, signed again at its own time.
    let retry = signer.headers(&secret, SW_MSG, now - 30, SW_BODY);
    assert_received(&webhook(&app, &id, &retry, SW_BODY).await, SW_MSG, true);
    assert_eq!(event_count(&app).await, 1);

    // Several signatures (a secret rotation): any one valid v1 is enough.
    let body = br#"{"type":"invoice.voided","data":{"invoice_id":"in_43"}}"#;
    let msg = "msg_second";
    let right = signer.sign(&secret, msg, now, body);
    let other = signer.sign(&whsec(b"the sender's previous secret!!!!"), msg, now, body);
    let sent =
        with(signer.headers(&secret, msg, now, body), "webhook-signature", Some(&format!("{other} {right}")));
    assert_received(&webhook(&app, &id, &sent, body).await, msg, false);
    assert_event(&app, msg, "invoice.voided", body, &id).await;
}

#[tokio::test]
async fn standard_webhooks_forgeries_stale_messages_and_downgrades_are_refused() {
    let Some(signer) =
        reference_signer("standard_webhooks_forgeries_stale_messages_and_downgrades_are_refused")
    else {
        return;
    };
    let app = spawn_app().await;
    let secret = sw_secret();
    let id =
        create_source(&app, "svix", json!({"verification": {"type": "standard_webhooks", "secret": secret}}))
            .await;
    let now = now_secs();
    let good = signer.headers(&secret, SW_MSG, now, SW_BODY);
    let right = signer.sign(&secret, SW_MSG, now, SW_BODY);
    let mac = right.trim_start_matches("v1,");
    let stale = now - 301;

    let forgeries = [
        (
            "a wrong secret",
            signer.headers(&whsec(b"some other secret, 32 bytes long"), SW_MSG, now, SW_BODY),
            SW_BODY.to_vec(),
        ),
        ("no webhook-signature", with(good.clone(), "webhook-signature", None), SW_BODY.to_vec()),
        ("no webhook-timestamp", with(good.clone(), "webhook-timestamp", None), SW_BODY.to_vec()),
        ("no webhook-id", with(good.clone(), "webhook-id", None), SW_BODY.to_vec()),
        (
            "a tampered body under the original's signature",
            good.clone(),
            String::from_utf8_lossy(SW_BODY).replace("1200", "12").into_bytes(),
        ),
        (
            "a message signed more than 5 minutes ago",
            signer.headers(&secret, SW_MSG, stale, SW_BODY),
            SW_BODY.to_vec(),
        ),
        (
            "a message signed 6 minutes ahead",
            signer.headers(&secret, SW_MSG, now + 360, SW_BODY),
            SW_BODY.to_vec(),
        ),
        (
            "a stale message re-dated",
            with(good.clone(), "webhook-timestamp", Some(&stale.to_string())),
            SW_BODY.to_vec(),
        ),
        ("another message's id", with(good.clone(), "webhook-id", Some("msg_other")), SW_BODY.to_vec()),
        (
            "a downgrade: the right MAC as v2",
            with(good.clone(), "webhook-signature", Some(&format!("v2,{mac}"))),
            SW_BODY.to_vec(),
        ),
        ("the right MAC unlabelled", with(good.clone(), "webhook-signature", Some(mac)), SW_BODY.to_vec()),
        (
            "the right MAC as an asymmetric v1a",
            with(good.clone(), "webhook-signature", Some(&format!("v1a,{mac}"))),
            SW_BODY.to_vec(),
        ),
    ];
    for (what, sent, body) in forgeries {
        assert_refused(&webhook(&app, &id, &sent, &body).await, what);
    }
    assert_eq!(event_count(&app).await, 0, "a refused webhook stores nothing");

    // The same, signed rightly, passes: the refusals were about the forgeries.
    assert_received(&webhook(&app, &id, &good, SW_BODY).await, SW_MSG, false);
}
