//! Every refused input names the exact field: a path into the body, dotted keys and `[i]`
//! indexes (`config.url`, `retry.max_attempts`, `event_types[2]`, `config.headers.X-Foo`), or
//! the query parameter (`per_page`, `since`). One table row per case; the OpenAPI document
//! says which operations take a body or a query, and each of them must have a row, so a new
//! route without one fails here.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, spawn_app};

/// `(method, route as OpenAPI names it, body, the first detail's field)`.
type BodyCase = (Method, &'static str, Value, &'static str);

/// `(route, query string, the first detail's field)`; every query is read by a GET.
type QueryCase = (&'static str, &'static str, &'static str);

const HTTPS: &str = "https://fields.invalid/hook";

fn body_cases() -> Vec<BodyCase> {
    let http = |config: Value| json!({"name": "d", "kind": "http", "config": config});
    let subscription = |extra: Value| {
        let mut body = json!({"name": "s", "destination_id": "any", "event_types": ["#"]});
        merge(&mut body, extra);
        body
    };
    let webhook = |config: Value| json!({"name": "w", "kind": "webhook", "config": config});
    vec![
        (Method::POST, "/v1/events", json!({"event_type": 7, "payload": {}}), "event_type"),
        (
            Method::POST,
            "/v1/events",
            json!({"event_type": "a.b", "payload": {}, "metadata": {"causation_id": ["x"]}}),
            "metadata.causation_id",
        ),
        (Method::POST, "/v1/events/batch", json!({"events": {"event_type": "a.b"}}), "events"),
        (Method::POST, "/v1/event-types", json!({"name": "a.b", "deprecated": "yes"}), "deprecated"),
        (Method::POST, "/v1/event-types", json!({"name": "A.B"}), "name"),
        (
            Method::POST,
            "/v1/event-types",
            json!({"name": "a.b", "schema": {"properties": {"total": {"type": 5}}}}),
            "schema.properties.total.type",
        ),
        (
            Method::PUT,
            "/v1/event-types/{name}",
            json!({"schema": {"allOf": [{"minimum": "none"}]}}),
            "schema.allOf[0].minimum",
        ),
        (Method::PUT, "/v1/event-types/{name}", json!({"description": ["d"]}), "description"),
        (Method::PATCH, "/v1/event-types/{name}", json!({"deprecated": "no"}), "deprecated"),
        (Method::POST, "/v1/destinations", http(json!({})), "config.url"),
        (Method::POST, "/v1/destinations", http(json!({"url": 443})), "config.url"),
        (Method::POST, "/v1/destinations", http(json!({"url": "ftp://x.example.com"})), "config.url"),
        (
            Method::POST,
            "/v1/destinations",
            http(json!({"url": HTTPS, "headers": {"X-Foo": 5}})),
            "config.headers.X-Foo",
        ),
        (
            Method::POST,
            "/v1/destinations",
            http(json!({"url": HTTPS, "auth": {"type": "bearer", "token": " "}})),
            "config.auth.token",
        ),
        (
            Method::POST,
            "/v1/destinations",
            http(json!({"url": HTTPS, "auth": {"type": "bearer", "token": 5}})),
            "config.auth.token",
        ),
        (
            Method::POST,
            "/v1/destinations",
            http(json!({"url": HTTPS, "auth": {"type": "kerberos"}})),
            "config.auth.type",
        ),
        (
            Method::POST,
            "/v1/destinations",
            http(json!({"url": HTTPS, "auth": {"type": "basic", "username": "u"}})),
            "config.auth.password",
        ),
        (
            Method::POST,
            "/v1/destinations",
            json!({"name": "d", "kind": "nats", "config": {"url": "nats://n.example.com:4222", "subject": ["s"]}}),
            "config.subject",
        ),
        (
            Method::POST,
            "/v1/destinations",
            json!({"name": "d", "kind": "http", "config": {"url": HTTPS}, "retry": {"max_attempts": "3"}}),
            "retry.max_attempts",
        ),
        (
            Method::POST,
            "/v1/destinations",
            json!({"name": "d", "kind": "http", "config": {"url": HTTPS}, "retry": {"max_attempts": 0}}),
            "retry.max_attempts",
        ),
        (
            Method::PUT,
            "/v1/destinations/{id}",
            json!({"name": "d", "kind": "http", "config": {"url": HTTPS}, "circuit_breaker": {"window_ms": "1m"}}),
            "circuit_breaker.window_ms",
        ),
        (
            Method::PATCH,
            "/v1/destinations/{id}",
            json!({"rate_limit": {"per_second": 0}}),
            "rate_limit.per_second",
        ),
        (Method::PATCH, "/v1/destinations/{id}", json!({"config": {"method": "GET"}}), "config.method"),
        (
            Method::POST,
            "/v1/subscriptions",
            subscription(json!({"event_types": ["a", "b", 7]})),
            "event_types[2]",
        ),
        (
            Method::POST,
            "/v1/subscriptions",
            subscription(json!({"event_types": ["a", "b", "C"]})),
            "event_types[2]",
        ),
        (Method::PUT, "/v1/subscriptions/{id}", subscription(json!({"ordering": "sideways"})), "ordering"),
        (Method::PATCH, "/v1/subscriptions/{id}", json!({"filter": 5}), "filter"),
        (Method::PATCH, "/v1/subscriptions/{id}", json!({"transform": ".event |||"}), "transform"),
        (Method::POST, "/v1/dead-letters/replay", json!({"since": "yesterday"}), "since"),
        (Method::POST, "/v1/dead-letters/replay", json!({"event_type": ["a"]}), "event_type"),
        (Method::POST, "/v1/api-keys", json!({"name": "k", "role": "root"}), "role"),
        (Method::POST, "/v1/api-keys", json!({"name": {"first": "k"}, "role": "viewer"}), "name"),
        (
            Method::POST,
            "/v1/sources",
            webhook(json!({"verification": {"type": "github", "secret": "s", "colour": 1}})),
            "config.verification.colour",
        ),
        (
            Method::POST,
            "/v1/sources",
            webhook(json!({"verification": {"type": "github", "secret": 5}})),
            "config.verification.secret",
        ),
        (Method::POST, "/v1/sources", webhook(json!({"verification": "github"})), "config.verification"),
        (
            Method::POST,
            "/v1/sources",
            webhook(json!({"verification": {"type": "github", "secret": "s"}, "forward_headers": ["ok", 5]})),
            "config.forward_headers[1]",
        ),
        (
            Method::POST,
            "/v1/sources",
            webhook(json!({"verification": {"type": "none"}, "event_type": {"jq": 5}})),
            "config.event_type.jq",
        ),
        (
            Method::POST,
            "/v1/sources",
            json!({"name": "o", "kind": "outbox", "config": {"database_url": "sqlite://app.db", "columns": {"id": 5}}}),
            "config.columns.id",
        ),
        (
            Method::PUT,
            "/v1/sources/{id}",
            webhook(
                json!({"verification": {"type": "none"}, "event_type": {"value": "a.b"}, "rate_limit": {"burst": 1}}),
            ),
            "config.rate_limit.per_second",
        ),
        (
            Method::PATCH,
            "/v1/sources/{id}",
            json!({"config": {"verification": {"type": "hmac", "header": "X Sig", "secret": "s"}}}),
            "config.verification.header",
        ),
        (
            Method::PATCH,
            "/v1/sources/{id}",
            json!({"config": {"verification": {"type": "hmac", "header": "X-Sig", "secret": "s", "algorithm": "md5"}}}),
            "config.verification.algorithm",
        ),
        (Method::POST, "/v1/sources/{id}/webhook", json!(["not", "an", "object"]), "body"),
    ]
}

fn query_cases() -> Vec<QueryCase> {
    vec![
        ("/v1/events", "per_page=lots", "per_page"),
        ("/v1/events", "since=yesterday", "since"),
        ("/v1/events", "after=not-a-cursor", "after"),
        ("/v1/events", "event_type=A", "event_type"),
        ("/v1/events", "colour=red", "colour"),
        ("/v1/deliveries", "status=lost", "status"),
        ("/v1/events/stream", "event_type=A.*", "event_type"),
        ("/v1/events/stream", "after=not-a-cursor", "after"),
        ("/v1/deliveries/stream", "status=lost", "status"),
        ("/v1/deliveries/stream", "colour=red", "colour"),
        ("/v1/deliveries", "page=1&after=x", "after"),
        ("/v1/dead-letters", "page=0", "page"),
        ("/v1/dead-letters", "until=soon", "until"),
        ("/v1/audit-log", "per_page=101", "per_page"),
        ("/v1/audit-log", "since=2026-13-01T00:00:00Z", "since"),
        ("/v1/subscriptions", "per_page=-1", "per_page"),
        ("/v1/destinations", "page=first", "page"),
        ("/v1/event-types", "per_page=0", "per_page"),
        ("/v1/sources", "page=1.5", "page"),
        ("/v1/api-keys", "per_page=true", "per_page"),
        ("/v1/status", "format=xml", "format"),
    ]
}

/// `extra`'s members set on `body`.
fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
}

/// The ids of one resource of each kind, for routes that name one.
struct Fixtures {
    destination: String,
    subscription: String,
    source: String,
    event_type: &'static str,
}

impl Fixtures {
    async fn create(app: &TestApp) -> Self {
        let destination = app.create_destination(HTTPS).await;
        let subscription = app.create_subscription(&destination, &["#"]).await;
        let source = app
            .post(
                "/v1/sources",
                json!({"name": "w", "kind": "webhook",
                       "config": {"verification": {"type": "none"}, "event_type": {"value": "a.b"}}}),
            )
            .await;
        source.assert_status(201);
        let event_type = "order.created";
        app.post("/v1/event-types", json!({"name": event_type})).await.assert_status(201);
        Self {
            destination,
            subscription,
            source: source.data()["id"].as_str().expect("an id").to_owned(),
            event_type,
        }
    }

    /// `route` with its path parameter filled in.
    fn path(&self, route: &str) -> String {
        let id = if route.starts_with("/v1/destinations/") {
            &self.destination
        } else if route.starts_with("/v1/subscriptions/") {
            &self.subscription
        } else {
            &self.source
        };
        route.replace("{id}", id).replace("{name}", self.event_type)
    }

    /// The version of each fixture, to see that no refusal changed one.
    async fn versions(&self, app: &TestApp) -> Vec<Value> {
        let mut shown = Vec::new();
        for route in
            ["/v1/destinations/{id}", "/v1/subscriptions/{id}", "/v1/sources/{id}", "/v1/event-types/{name}"]
        {
            let answer = app.get(&self.path(route)).await;
            answer.assert_status(200);
            shown.push(answer.data()["version"].clone());
        }
        shown
    }
}

/// `(method, route)` of every operation the OpenAPI document gives a request body, and every
/// one it gives a query parameter.
async fn documented_inputs(app: &TestApp) -> (BTreeSet<(String, String)>, BTreeSet<(String, String)>) {
    let doc: Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("served").json().await.expect("JSON");
    let (mut bodies, mut queries) = (BTreeSet::new(), BTreeSet::new());
    for (route, operations) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let key = (method.to_uppercase(), route.clone());
            if operation.get("requestBody").is_some() {
                bodies.insert(key.clone());
            }
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            if parameters.iter().any(|p| p["in"] == "query") {
                queries.insert(key);
            }
        }
    }
    (bodies, queries)
}

/// Whether `answer` is a 400 `validation_error` whose first detail is at `field`.
fn names_first(answer: &Answer, field: &str) -> bool {
    answer.status == 400
        && answer.body["error"]["code"] == "validation_error"
        && answer.detail_fields().first().map(String::as_str) == Some(field)
}

#[tokio::test]
async fn every_route_names_the_exact_field_of_a_bad_body_or_query() {
    let app = spawn_app().await;
    let fixtures = Fixtures::create(&app).await;
    let before = fixtures.versions(&app).await;
    let mut failures = Vec::new();

    for (method, route, body, field) in body_cases() {
        let path = fixtures.path(route);
        let request = app.request(method.clone(), &path);
        let request = match method {
            Method::PATCH => {
                request.header("content-type", "application/merge-patch+json").body(body.to_string())
            }
            _ => request.json(&body),
        };
        let answer = app.send(request).await;
        if !names_first(&answer, field) {
            failures.push(format!(
                "{method} {path} {body}: wanted {field}, got {} {}",
                answer.status, answer.body
            ));
        }
    }
    for (route, query, field) in query_cases() {
        let path = format!("{}?{query}", fixtures.path(route));
        let answer = app.get(&path).await;
        if !names_first(&answer, field) {
            failures.push(format!("GET {path}: wanted {field}, got {} {}", answer.status, answer.body));
        }
    }
    let undecodable = app.get("/v1/destinations/%FF").await;
    undecodable.assert_error(400, "validation_error");
    assert_eq!(undecodable.detail_fields(), ["id"], "a path parameter is named too");
    assert!(
        failures.is_empty(),
        "{} refusals named the wrong field:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(fixtures.versions(&app).await, before, "a refused request changed a resource");
    // Only the cases' own type: the hub may publish operational events of its own meanwhile.
    assert_eq!(app.count("/v1/events?event_type=a.b").await, 0, "no refused event was stored");

    let (bodies, queries) = documented_inputs(&app).await;
    let uncovered = |cases: BTreeSet<(String, String)>, documented: &BTreeSet<(String, String)>| {
        documented.difference(&cases).cloned().collect::<Vec<_>>()
    };
    let body_routes = body_cases().into_iter().map(|(m, r, _, _)| (m.to_string(), r.to_owned())).collect();
    let query_routes = query_cases().into_iter().map(|(r, _, _)| ("GET".to_owned(), r.to_owned())).collect();
    assert_eq!(
        uncovered(body_routes, &bodies),
        Vec::<(String, String)>::new(),
        "operations with a body and no case"
    );
    assert_eq!(
        uncovered(query_routes, &queries),
        Vec::<(String, String)>::new(),
        "operations with a query and no case"
    );
}
