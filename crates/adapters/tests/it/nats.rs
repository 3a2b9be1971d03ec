//! The `nats` transport against the real NATS server with JetStream (`NATS_URL`, by default
//! nats://127.0.0.1:4222): each test makes a stream of its own and reads back, with the
//! broker's own client, what the transport published.

use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::nats::NatsTransport;
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, Destination, DestinationKind, RetryPolicy,
};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport};

use crate::http::{body, event};

pub(crate) fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A JetStream context on the test broker, or `None` (said loudly) when it is unreachable
/// outside CI; under `CI=true` an unreachable broker fails the test.
pub(crate) async fn broker() -> Option<jetstream::Context> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(jetstream::new(client)),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("NATS at {} is unreachable under CI=true: {error}", nats_url())
        }
        Err(error) => {
            eprintln!("SKIPPED: NATS at {} is unreachable ({error}); start it to run this test", nats_url());
            None
        }
    }
}

/// A stream of its own for one test, taking `<prefix>.>`; deleted when the test ends.
struct TestStream {
    jetstream: jetstream::Context,
    name: String,
    prefix: String,
}

impl TestStream {
    async fn create(jetstream: &jetstream::Context) -> Self {
        let suffix = format!("{:016x}", rand::random::<u64>());
        let name = format!("SWITCHYARD_TEST_{suffix}");
        let prefix = format!("switchyard-test.{suffix}");
        jetstream
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            })
            .await
            .expect("a test stream");
        Self { jetstream: jetstream.clone(), name, prefix }
    }

    async fn messages(&self) -> u64 {
        let mut stream = self.jetstream.get_stream(&self.name).await.expect("the stream");
        stream.info().await.expect("its info").state.messages
    }

    async fn message(&self, sequence: u64) -> async_nats::jetstream::message::StreamMessage {
        let stream = self.jetstream.get_stream(&self.name).await.expect("the stream");
        stream.get_raw_message(sequence).await.expect("the message")
    }

    async fn delete(self) {
        let _ = self.jetstream.delete_stream(&self.name).await;
    }
}

fn destination(config: Value) -> Destination {
    let validated = switchyard_adapters::nats::config::validate(config, UrlPolicy::AllowPrivate)
        .expect("a valid nats config");
    Destination {
        id: DestinationId::generate(),
        name: "broker".into(),
        kind: DestinationKind::Nats,
        config: validated.config,
        secrets: validated.secrets,
        timeout_ms: 5_000,
        connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

async fn deliver(
    transport: &NatsTransport,
    destination: &Destination,
    delivery_id: &DeliveryId,
) -> Result<Receipt, DeliveryError> {
    let event = event();
    let body = body();
    let message = OutboundMessage { delivery_id, attempt: 1, event: &event, body: &body, destination };
    transport.deliver(&message).await
}

fn header<'a>(message: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|value| value.as_str())
}

#[tokio::test]
async fn a_delivery_is_published_once_with_its_identity_however_often_it_is_attempted() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let transport = NatsTransport::new(UrlPolicy::AllowPrivate);
    let destination =
        destination(json!({"url": nats_url(), "subject": format!("{}.{{event_type}}", stream.prefix)}));
    let delivery = DeliveryId::generate();

    let first = deliver(&transport, &destination, &delivery).await.expect("acknowledged");
    let again = deliver(&transport, &destination, &delivery).await.expect("acknowledged again");
    assert!(first.response_body.as_deref().is_some_and(|b| b.contains(&stream.name)), "{first:?}");
    assert!(again.response_body.as_deref().is_some_and(|b| b.contains("duplicate")), "{again:?}");
    assert_eq!(stream.messages().await, 1, "JetStream keeps one copy per delivery id");

    let message = stream.message(1).await;
    assert_eq!(message.subject.as_str(), format!("{}.order.created", stream.prefix));
    assert_eq!(serde_json::from_slice::<Value>(&message.payload).expect("JSON"), body());
    assert_eq!(header(&message, "Nats-Msg-Id"), Some(delivery.as_str()));
    assert_eq!(header(&message, "X-Event-ID"), Some("ord-1001-created"));
    assert_eq!(header(&message, "X-Event-Type"), Some("order.created"));
    assert_eq!(header(&message, "X-Correlation-ID"), Some("corr-42"));
    assert_eq!(header(&message, "X-Causation-ID"), Some("cart-7-checked-out"));
    let traceparent = header(&message, "traceparent").expect("a traceparent");
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the publisher's trace: {traceparent}"
    );

    // Another delivery of the same event is another message.
    deliver(&transport, &destination, &DeliveryId::generate()).await.expect("acknowledged");
    assert_eq!(stream.messages().await, 2);
    transport.close().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_subject_no_stream_takes_is_retryable_and_says_so() {
    let Some(_) = broker().await else { return };
    let transport = NatsTransport::new(UrlPolicy::AllowPrivate);
    let subject = format!("switchyard-nowhere.{:016x}", rand::random::<u64>());
    let destination = destination(json!({"url": nats_url(), "subject": subject}));
    let err = deliver(&transport, &destination, &DeliveryId::generate()).await.expect_err("no stream");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("no responders") && err.message.contains(&subject), "{}", err.message);
}

#[tokio::test]
async fn an_unreachable_broker_is_retryable_and_a_private_one_refused_under_the_guard() {
    // Nothing listens on port 1 of the loopback address.
    let closed = destination(json!({"url": "nats://127.0.0.1:1", "subject": "orders"}));
    let err = deliver(&NatsTransport::new(UrlPolicy::AllowPrivate), &closed, &DeliveryId::generate())
        .await
        .expect_err("unreachable");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("could not connect to NATS at 127.0.0.1:1"), "{}", err.message);

    let guarded = NatsTransport::new(UrlPolicy::PublicOnly);
    let err = deliver(&guarded, &closed, &DeliveryId::generate()).await.expect_err("refused");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("refused to connect"), "{}", err.message);
    let written = guarded.validate(json!({"url": "nats://localhost:4222", "subject": "orders"})).await;
    assert_eq!(written.expect_err("refused").0[0].field, "config.url");
}

#[tokio::test]
async fn an_ordering_key_in_the_subject_comes_from_the_event() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let transport = NatsTransport::new(UrlPolicy::AllowPrivate);
    let destination =
        destination(json!({"url": nats_url(), "subject": format!("{}.{{ordering_key}}", stream.prefix)}));
    let err = deliver(&transport, &destination, &DeliveryId::generate()).await.expect_err("no key");
    assert!(!err.retryable && err.message.contains("{ordering_key}"), "{err:?}");

    let mut keyed = event();
    keyed.ordering_key = Some("customer-7".into());
    let body = body();
    let delivery = DeliveryId::generate();
    let message = OutboundMessage {
        delivery_id: &delivery,
        attempt: 1,
        event: &keyed,
        body: &body,
        destination: &destination,
    };
    transport.deliver(&message).await.expect("acknowledged");
    assert_eq!(stream.message(1).await.subject.as_str(), format!("{}.customer-7", stream.prefix));
    transport.close().await;
    stream.delete().await;
}
