//! What is sent, and how each kind of answer (or no answer) is classified.

use std::time::Duration;

use serde_json::json;
use switchyard_adapters::http::MAX_RESPONSE_BODY;
use switchyard_adapters::{AdapterSettings, UrlPolicy, transports};
use switchyard_core::destination::{DestinationKind, RetryPolicy};
use switchyard_core::id::DeliveryId;

use super::{Sink, adapter, body, deliver, deliver_once, destination, expect_err};

#[tokio::test]
async fn a_2xx_is_a_receipt_with_the_answer() {
    let sink = Sink::start().await;
    let receipt =
        deliver_once(&adapter(), &destination(json!({"url": sink.url("/ok")}))).await.expect("delivered");
    assert_eq!(receipt.status_code, Some(200));
    assert_eq!(receipt.response_body.as_deref(), Some("accepted"));
}

#[tokio::test]
async fn statuses_are_classified_by_the_retry_policy() {
    let sink = Sink::start().await;
    let adapter = adapter();
    for (code, retryable) in
        [(500, true), (502, true), (408, true), (425, true), (400, false), (404, false), (410, false)]
    {
        let dest = destination(json!({"url": sink.url(&format!("/status/{code}"))}));
        let err = expect_err(deliver_once(&adapter, &dest).await);
        assert_eq!(err.status_code, Some(code));
        assert_eq!(err.retryable, retryable, "{code}");
        assert_eq!(err.retry_after_ms, None);
        assert!(
            err.response_body.as_deref().is_some_and(|b| b.starts_with(&format!("answered {code}"))),
            "{code}: {:?}",
            err.response_body
        );
    }
    let lenient = {
        let mut dest = destination(json!({"url": sink.url("/status/404")}));
        dest.retry = RetryPolicy { retry_on_4xx: true, ..RetryPolicy::default() };
        dest
    };
    assert!(expect_err(deliver_once(&adapter, &lenient).await).retryable);
}

#[tokio::test]
async fn the_error_message_names_the_status() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/status/503")}));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert_eq!(err.message, "HTTP 503 Service Unavailable");
}

#[tokio::test]
async fn redirects_are_answers_not_followed() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/redirect")}));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert_eq!(err.status_code, Some(302));
    assert!(!err.retryable);
    let paths: Vec<String> = sink.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/redirect"], "the Location was not visited");
}

#[tokio::test]
async fn retry_after_in_seconds_is_reported() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/retry-after-seconds")}));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert_eq!(err.status_code, Some(429));
    assert!(err.retryable);
    assert_eq!(err.retry_after_ms, Some(7_000));
}

#[tokio::test]
async fn retry_after_as_a_date_is_reported_as_a_delay() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/retry-after-date")}));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert_eq!(err.status_code, Some(503));
    assert!(err.retryable);
    // The sink asks for two minutes from its clock, to the second.
    let delay = err.retry_after_ms.expect("a Retry-After delay");
    assert!((100_000..=120_000).contains(&delay), "{delay}");
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_a_retryable_timeout() {
    let sink = Sink::start().await;
    let mut dest = destination(json!({"url": sink.url("/hang")}));
    dest.timeout_ms = 200;
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert!(err.retryable);
    assert_eq!(err.status_code, None);
    assert_eq!(err.message, "timed out after 200 ms");
}

#[tokio::test]
async fn an_answer_whose_body_stalls_ends_at_the_timeout_with_what_arrived() {
    let sink = Sink::start().await;
    let mut dest = destination(json!({"url": sink.url("/stall")}));
    dest.timeout_ms = 300;
    let started = std::time::Instant::now();
    let receipt = deliver_once(&adapter(), &dest).await.expect("the status decided: delivered");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(receipt.response_body.as_deref(), Some("partial"));
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_is_a_connect_timeout() {
    // Accepts connections and never answers the client's hello.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let port = listener.local_addr().expect("an address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut dest = destination(json!({"url": format!("https://127.0.0.1:{port}/hook")}));
    dest.connect_timeout_ms = 300;
    dest.timeout_ms = 5_000;
    let started = std::time::Instant::now();
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(err.retryable);
    assert_eq!(err.message, format!("could not connect to 127.0.0.1:{port}: no connection within 300 ms"));
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connect_error_naming_the_host() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.local_addr().expect("an address").port()
    };
    let dest = destination(json!({"url": format!("http://127.0.0.1:{port}/hook?key=s3cr3t")}));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert!(err.retryable);
    assert_eq!(err.status_code, None);
    assert!(err.message.starts_with(&format!("could not connect to 127.0.0.1:{port}: ")), "{}", err.message);
    assert!(!err.message.contains("s3cr3t"), "{}", err.message);
}

#[tokio::test]
async fn the_request_carries_the_body_and_the_hub_headers() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": sink.url("/ok"),
        "method": "PUT",
        "headers": {"X-Team": "payments", "x-api-version": "2024-01-01"}
    }));
    deliver_once(&adapter(), &dest).await.expect("delivered");
    let request = sink.single_request();
    assert_eq!(request.method, "PUT");
    assert_eq!(
        request.body.as_ref(),
        serde_json::to_vec(&body()).unwrap().as_slice(),
        "the body is exactly the message body"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("user-agent"),
        Some(format!("Switchyard/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert_eq!(request.header("x-event-type"), Some("order.created"));
    assert_eq!(request.header("x-event-id"), Some("ord-1001-created"));
    assert_eq!(request.header("x-correlation-id"), Some("corr-42"));
    assert_eq!(request.header("x-causation-id"), Some("cart-7-checked-out"));
    let traceparent = request.header("traceparent").expect("the event's trace is continued");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && traceparent.ends_with("-01"),
        "same trace id and flags: {traceparent}"
    );
    assert_ne!(traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a new parent id");
    assert_eq!(request.header("x-team"), Some("payments"));
    assert_eq!(request.header("x-api-version"), Some("2024-01-01"));
    assert_eq!(request.header("authorization"), None);
    let timestamp: i64 = request
        .header("webhook-timestamp")
        .and_then(|t| t.parse().ok())
        .expect("a numeric webhook-timestamp");
    let now = chrono::Utc::now().timestamp();
    assert!((now - 60..=now + 1).contains(&timestamp), "{timestamp} vs {now}");
    assert!(request.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
}

#[tokio::test]
async fn a_configured_user_agent_and_accept_replace_the_hubs() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": sink.url("/ok#fragment"),
        "headers": {"User-Agent": "orders-hub/2", "Accept": "application/json"}
    }));
    // A fragment sent in the path would not reach `/ok`.
    deliver_once(&adapter(), &dest).await.expect("delivered, the fragment left out");
    let request = sink.single_request();
    let values =
        |name: &str| request.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect::<Vec<_>>();
    assert_eq!(values("user-agent"), ["orders-hub/2"]);
    assert_eq!(values("accept"), ["application/json"]);
    assert_eq!(values("host"), [sink.addr.to_string()]);

    let plain = destination(json!({"url": sink.url("/ok")}));
    deliver_once(&adapter(), &plain).await.expect("delivered");
    let request = sink.requests().pop().expect("a second request");
    assert_eq!(request.header("accept"), Some("*/*"));
}

#[tokio::test]
async fn secret_headers_are_sent_beside_the_static_ones() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": sink.url("/ok"),
        "headers": {"X-Team": "payments"},
        "secret_headers": {"X-API-Key": "k3y-from-the-vault", "X-Tenant-Token": "t0k"}
    }));
    assert!(dest.config.get("secret_headers").is_none(), "stored apart, with the secrets");
    deliver_once(&adapter(), &dest).await.expect("delivered");
    let request = sink.single_request();
    assert_eq!(request.header("x-api-key"), Some("k3y-from-the-vault"));
    assert_eq!(request.header("x-tenant-token"), Some("t0k"));
    assert_eq!(request.header("x-team"), Some("payments"));
}

#[tokio::test]
async fn webhook_id_is_the_delivery_id_on_every_attempt() {
    let sink = Sink::start().await;
    let adapter = adapter();
    let dest = destination(json!({"url": sink.url("/ok")}));
    let delivery = DeliveryId::generate();
    deliver(&adapter, &dest, &delivery, 1).await.expect("first");
    deliver(&adapter, &dest, &delivery, 2).await.expect("second");
    deliver_once(&adapter, &dest).await.expect("another delivery");
    let ids: Vec<String> =
        sink.requests().iter().map(|r| r.header("webhook-id").expect("a webhook-id").to_owned()).collect();
    assert_eq!(ids[0], delivery.as_str());
    assert_eq!(ids[1], delivery.as_str());
    assert_ne!(ids[2], delivery.as_str());
}

#[tokio::test]
async fn the_response_body_is_cut_at_4_kib() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/big")}));
    let receipt = deliver_once(&adapter(), &dest).await.expect("delivered");
    let text = receipt.response_body.expect("a body");
    // 4096 bytes of two-byte characters: 2048 whole ones, nothing cut in half.
    assert_eq!(text.len(), MAX_RESPONSE_BODY);
    assert!(text.chars().all(|c| c == 'é'));
}

#[tokio::test]
async fn an_endless_body_is_not_read_to_its_end() {
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/endless")}));
    // Generous, and far below the destination's 30 s timeout: only a reader that stops at the
    // cap finishes at all.
    let receipt = tokio::time::timeout(Duration::from_secs(10), deliver_once(&adapter(), &dest))
        .await
        .expect("the adapter stopped reading")
        .expect("delivered");
    assert_eq!(receipt.status_code, Some(200));
    assert_eq!(receipt.response_body.map(|b| b.len()), Some(MAX_RESPONSE_BODY));
}

#[tokio::test]
async fn the_registry_has_a_transport_for_every_kind() {
    let settings = AdapterSettings { url_policy: UrlPolicy::AllowPrivate, ..AdapterSettings::default() };
    let transports = transports(settings);
    for kind in [
        DestinationKind::Http,
        DestinationKind::Nats,
        DestinationKind::Amqp,
        DestinationKind::Redis,
        DestinationKind::Mqtt,
    ] {
        assert!(transports.get(kind).is_some(), "{kind}");
    }
    // The registry's adapter delivers like any other.
    let sink = Sink::start().await;
    let dest = destination(json!({"url": sink.url("/ok")}));
    let event = super::event();
    let body = body();
    let delivery = DeliveryId::generate();
    let message = switchyard_core::transport::OutboundMessage {
        delivery_id: &delivery,
        attempt: 1,
        event: &event,
        body: &body,
        destination: &dest,
    };
    let transport = transports.get(DestinationKind::Http).expect("http");
    assert_eq!(transport.deliver(&message).await.expect("delivered").status_code, Some(200));
}
