//! Deliveries over HTTPS to a receiver on loopback whose certificate a test authority signed.
//! The node trusts that authority as it trusts the OS's: on Linux the roots are read from the
//! file `SSL_CERT_FILE` names, when it is set. Covered: HTTP/2 and HTTP/1.1 chosen by ALPN, the
//! host name checked against the certificate, a stream the receiver refuses (`REFUSED_STREAM`)
//! or leaves unprocessed (`GOAWAY`) sent again within the same attempt, and a certificate no
//! trusted authority signed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::process::{Node, Scenario};

const DEADLINE: Duration = Duration::from_secs(20);

/// A certificate authority of the test's own, and a certificate for `localhost` it signed.
struct Authority {
    root_pem: String,
    leaf: CertificateDer<'static>,
    leaf_key: PrivatePkcs8KeyDer<'static>,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Switchyard test authority");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let root = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key")).expect("a root");
        let leaf_key = KeyPair::generate().expect("a key");
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .expect("parameters")
            .signed_by(&leaf_key, &root)
            .expect("a certificate");
        Authority {
            root_pem: root.pem(),
            leaf: leaf.der().clone(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    /// Offers only `h2`, and resets the first stream it is sent with `REFUSED_STREAM`.
    Http2RefusingTheFirstStream,
    /// Offers only `h2`, and answers the first stream of its first connection with `GOAWAY`,
    /// `NO_ERROR` and a last stream id of 0 (the stream was not processed), then closes it.
    Http2GoingAwayAtTheFirstStream,
    /// Offers only `http/1.1`.
    Http1,
}

#[derive(Debug, Default)]
struct Log {
    /// Each request answered 200: its HTTP version, `webhook-id` and body.
    answered: Vec<(http::Version, String, Bytes)>,
    refused: usize,
}

/// An HTTPS receiver on 127.0.0.1 presenting the authority's certificate for `localhost`.
struct TlsSink {
    url: String,
    log: Arc<Mutex<Log>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl TlsSink {
    async fn start(authority: &Authority, protocol: Protocol) -> TlsSink {
        switchyard_adapters::install_crypto_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![authority.leaf.clone()],
                PrivateKeyDer::Pkcs8(authority.leaf_key.clone_key()),
            )
            .expect("a server configuration");
        config.alpn_protocols = match protocol {
            Protocol::Http2RefusingTheFirstStream | Protocol::Http2GoingAwayAtTheFirstStream => {
                vec![b"h2".to_vec()]
            }
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let log = Arc::new(Mutex::new(Log::default()));
        let accepting = tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (acceptor, log) = (acceptor.clone(), log.clone());
                    tokio::spawn(async move {
                        // A handshake the client abandons (an untrusted certificate) ends here.
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        match protocol {
                            Protocol::Http2RefusingTheFirstStream => serve_http2(tls, log, true).await,
                            Protocol::Http2GoingAwayAtTheFirstStream if first_refusal(&log) => {
                                go_away_at_the_first_stream(tls).await
                            }
                            Protocol::Http2GoingAwayAtTheFirstStream => serve_http2(tls, log, false).await,
                            Protocol::Http1 => serve_http1(tls, log).await,
                        }
                    });
                }
            }
        });
        TlsSink { url: format!("https://localhost:{port}/hook"), log, accepting }
    }

    async fn wait_for_answered(&self, count: usize) -> Vec<(http::Version, String, Bytes)> {
        let started = Instant::now();
        loop {
            let answered = self.log.lock().expect("the log").answered.clone();
            if answered.len() >= count {
                return answered;
            }
            assert!(started.elapsed() < DEADLINE, "{} of {count} requests answered", answered.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn refused(&self) -> usize {
        self.log.lock().expect("the log").refused
    }
}

/// Whether nothing was refused or answered yet; counts a refusal if so.
fn first_refusal(log: &Mutex<Log>) -> bool {
    let mut log = log.lock().expect("the log");
    let first = log.refused == 0 && log.answered.is_empty();
    log.refused += usize::from(first);
    first
}

async fn serve_http2(tls: TlsStream<TcpStream>, log: Arc<Mutex<Log>>, refuse_the_first_stream: bool) {
    let Ok(mut connection) = h2::server::handshake(tls).await else { return };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        if refuse_the_first_stream && first_refusal(&log) {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        let log = log.clone();
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            record(&log, parts.version, &parts.headers, bytes.into());
            let _ = respond.send_response(http::Response::new(()), true);
        });
    }
}

/// Speaks just enough HTTP/2 to take a client's first stream and answer it with `GOAWAY`:
/// `h2`'s server names every stream it has seen as processed, so it cannot send this.
async fn go_away_at_the_first_stream(mut tls: TlsStream<TcpStream>) {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const GOAWAY: u8 = 0x7;
    const ACK: u8 = 0x1;
    let mut preface = [0; 24];
    if tls.read_exact(&mut preface).await.is_err() || tls.write_all(&frame(SETTINGS, 0, &[])).await.is_err() {
        return;
    }
    loop {
        let mut header = [0; 9];
        if tls.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut payload = vec![0; u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize];
        if tls.read_exact(&mut payload).await.is_err() {
            return;
        }
        match header[3] {
            SETTINGS if header[4] & ACK == 0 => {
                let _ = tls.write_all(&frame(SETTINGS, ACK, &[])).await;
            }
            HEADERS => {
                // Last stream id 0, error code NO_ERROR (0).
                let _ = tls.write_all(&frame(GOAWAY, 0, &[0; 8])).await;
                let _ = tls.flush().await;
                // The client reads the GOAWAY before the connection ends.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = tls.shutdown().await;
                return;
            }
            _ => {}
        }
    }
}

/// An HTTP/2 frame on stream 0.
fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(payload.len()).expect("a short payload").to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags, 0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

async fn serve_http1(tls: TlsStream<TcpStream>, log: Arc<Mutex<Log>>) {
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            record(&log, parts.version, &parts.headers, bytes);
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
        }
    });
    let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
}

fn record(log: &Mutex<Log>, version: http::Version, headers: &http::HeaderMap, body: Bytes) {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    log.lock().expect("the log").answered.push((version, id, body));
}

/// A receiver with `signer`'s certificate speaking `protocol`, and a node that trusts only
/// `trusted` and routes every event to the receiver.
struct Route {
    sink: TlsSink,
    scenario: Scenario,
    node: Node,
    _roots: tempfile::TempDir,
}

impl Route {
    async fn new(signer: &Authority, trusted: &Authority, protocol: Protocol) -> Route {
        let sink = TlsSink::start(signer, protocol).await;
        let scenario = Scenario::new();
        let roots = tempfile::tempdir().expect("a directory");
        let path = roots.path().join("roots.pem");
        std::fs::write(&path, &trusted.root_pem).expect("roots written");
        let node = scenario.start_with(&[("SSL_CERT_FILE", path.to_str().expect("a UTF-8 path"))]).await;
        scenario.route_to_url(&node, &sink.url).await;
        Route { sink, scenario, node, _roots: roots }
    }

    /// Publishes one event; answers its delivery once succeeded, and the HTTP version it was
    /// answered over.
    async fn deliver_one(&self) -> (Value, http::Version) {
        self.scenario.publish(&self.node, 1).await;
        let answered = self.sink.wait_for_answered(1).await;
        let delivery = delivery_with_status(&self.scenario, &self.node, "e-0", "succeeded").await;
        assert_eq!(delivery["id"], answered[0].1.as_str());
        (delivery, answered[0].0)
    }
}

/// The delivery of `event_id` once it has `status`.
async fn delivery_with_status(scenario: &Scenario, node: &Node, event_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let event = scenario.get(node, &format!("/v1/events/{event_id}")).await;
        if let Some(delivery) =
            event["deliveries"].as_array().and_then(|d| d.first()).filter(|d| d["status"] == status)
        {
            let id = delivery["id"].as_str().expect("an id");
            return scenario.get(node, &format!("/v1/deliveries/{id}")).await;
        }
        assert!(started.elapsed() < DEADLINE, "the delivery of {event_id} never became {status}: {event}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn deliveries_go_over_http2_and_a_refused_stream_is_sent_again_within_the_attempt() {
    let authority = Authority::new();
    let route = Route::new(&authority, &authority, Protocol::Http2RefusingTheFirstStream).await;

    route.scenario.publish(&route.node, 3).await;

    let answered = route.sink.wait_for_answered(3).await;
    assert_eq!(route.sink.refused(), 1);
    for i in 0..3 {
        let delivery =
            delivery_with_status(&route.scenario, &route.node, &format!("e-{i}"), "succeeded").await;
        assert_eq!(delivery["attempt_count"], 1, "the refused stream was not an attempt of its own");
        let (version, _, body) = answered
            .iter()
            .find(|(_, id, _)| delivery["id"] == id.as_str())
            .expect("each delivery answered once");
        assert_eq!(*version, http::Version::HTTP_2);
        assert_eq!(serde_json::from_slice::<Value>(body).expect("JSON"), json!({"i": i}));
    }
    assert_eq!(answered.len(), 3, "no delivery answered twice");
}

#[tokio::test]
async fn a_stream_cut_by_goaway_without_error_is_sent_again_within_the_attempt() {
    let authority = Authority::new();
    let route = Route::new(&authority, &authority, Protocol::Http2GoingAwayAtTheFirstStream).await;

    let (delivery, version) = route.deliver_one().await;

    assert_eq!(route.sink.refused(), 1);
    assert_eq!(delivery["attempt_count"], 1, "the cut stream was not an attempt of its own");
    assert_eq!(version, http::Version::HTTP_2);
}

#[tokio::test]
async fn a_receiver_that_offers_only_http1_is_sent_http1_over_tls() {
    let authority = Authority::new();
    let route = Route::new(&authority, &authority, Protocol::Http1).await;

    let (_, version) = route.deliver_one().await;

    assert_eq!(version, http::Version::HTTP_11);
}

#[tokio::test]
async fn a_certificate_no_trusted_authority_signed_fails_the_attempt_and_says_so() {
    let (signer, stranger) = (Authority::new(), Authority::new());
    let route = Route::new(&signer, &stranger, Protocol::Http1).await;

    route.scenario.publish(&route.node, 1).await;

    let started = Instant::now();
    let attempt = loop {
        let event = route.scenario.get(&route.node, "/v1/events/e-0").await;
        let id = event["deliveries"][0]["id"].as_str().expect("a delivery").to_owned();
        let delivery = route.scenario.get(&route.node, &format!("/v1/deliveries/{id}")).await;
        if let Some(first) = delivery["attempts"].as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no attempt was recorded: {delivery}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let error = attempt["error"].as_str().unwrap_or("");
    assert!(error.contains("certificate"), "the reason names the certificate: {attempt}");
    assert!(
        route.sink.log.lock().expect("the log").answered.is_empty(),
        "nothing was sent over the untrusted connection"
    );
}
