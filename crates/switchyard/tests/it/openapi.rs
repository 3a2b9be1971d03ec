//! The OpenAPI document: it is valid OpenAPI 3.1 (checked against the OpenAPI Initiative's own
//! schema, vendored in `tests/fixtures/`), it lists exactly the routes the API has, and the
//! running router answers every operation it lists.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// The official OpenAPI 3.1 schema, `$id` `https://spec.openapis.org/oas/3.1/schema/2022-10-07`
/// (source and licence in `tests/fixtures/README.md`).
const OPENAPI_31_SCHEMA: &str = include_str!("../fixtures/openapi-3.1.schema.json");

/// Every operation of the API, sorted by path then method, written out from
/// `crates/api/src/routes/*.rs`. A route added without documentation, or a documented route
/// removed, makes `document_lists_exactly_the_expected_operations` fail: update this list
/// together with the route.
const EXPECTED_OPERATIONS: &[(&str, &str)] = &[
    ("/health/live", "get"),
    ("/health/ready", "get"),
    ("/metrics", "get"),
    ("/v1/api-keys", "get"),
    ("/v1/api-keys", "post"),
    ("/v1/api-keys/{id}", "delete"),
    ("/v1/audit-log", "get"),
    ("/v1/dead-letters", "get"),
    ("/v1/dead-letters/replay", "post"),
    ("/v1/deliveries", "get"),
    ("/v1/deliveries/stream", "get"),
    ("/v1/deliveries/{id}", "get"),
    ("/v1/deliveries/{id}/retry", "post"),
    ("/v1/destinations", "get"),
    ("/v1/destinations", "post"),
    ("/v1/destinations/{id}", "delete"),
    ("/v1/destinations/{id}", "get"),
    ("/v1/destinations/{id}", "patch"),
    ("/v1/destinations/{id}", "put"),
    ("/v1/destinations/{id}/health", "get"),
    ("/v1/destinations/{id}/pause", "post"),
    ("/v1/destinations/{id}/resume", "post"),
    ("/v1/destinations/{id}/signing-secret", "get"),
    ("/v1/destinations/{id}/signing-secret/rotate", "post"),
    ("/v1/destinations/{id}/test", "post"),
    ("/v1/event-types", "get"),
    ("/v1/event-types", "post"),
    ("/v1/event-types/{name}", "delete"),
    ("/v1/event-types/{name}", "get"),
    ("/v1/event-types/{name}", "patch"),
    ("/v1/event-types/{name}", "put"),
    ("/v1/events", "get"),
    ("/v1/events", "post"),
    ("/v1/events/batch", "post"),
    ("/v1/events/stream", "get"),
    ("/v1/events/{event_id}", "get"),
    ("/v1/events/{event_id}/trace", "get"),
    ("/v1/sources", "get"),
    ("/v1/sources", "post"),
    ("/v1/sources/{id}", "delete"),
    ("/v1/sources/{id}", "get"),
    ("/v1/sources/{id}", "patch"),
    ("/v1/sources/{id}", "put"),
    ("/v1/sources/{id}/webhook", "post"),
    ("/v1/status", "get"),
    ("/v1/subscriptions", "get"),
    ("/v1/subscriptions", "post"),
    ("/v1/subscriptions/{id}", "delete"),
    ("/v1/subscriptions/{id}", "get"),
    ("/v1/subscriptions/{id}", "patch"),
    ("/v1/subscriptions/{id}", "put"),
];

/// The operation keys of an OpenAPI 3.1 Path Item Object.
const PATH_ITEM_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// The methods probed on every documented path: each is either documented there or refused
/// with 405.
const PROBED_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The prefix of the message the unknown-route fallback answers (`not_found` in the api crate).
const FALLBACK_MESSAGE: &str = "no route for";

fn document() -> Value {
    serde_json::to_value(switchyard_api::openapi()).expect("the document serializes")
}

fn openapi_31_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(OPENAPI_31_SCHEMA).expect("the vendored schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the OpenAPI 3.1 schema compiles offline")
}

/// Every validation error, one a line, with where it is in the document and in the schema.
fn validation_errors(validator: &jsonschema::Validator, document: &Value) -> Vec<String> {
    validator
        .iter_errors(document)
        .map(|e| format!("at {:?} (schema {}): {e}", e.instance_path().to_string(), e.schema_path()))
        .collect()
}

/// The (path, method) pairs a document lists, sorted.
fn operations(document: &Value) -> Vec<(String, String)> {
    let paths = document["paths"].as_object().expect("the document has a paths object");
    let mut found = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for key in item.keys() {
            if PATH_ITEM_METHODS.contains(&key.as_str()) {
                found.insert((path.clone(), key.clone()));
            }
        }
    }
    found.into_iter().collect()
}

/// A concrete path for a templated one: every `{param}` becomes `x`.
fn concrete(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' if in_param => {
                in_param = false;
                out.push('x');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.to_ascii_uppercase().as_bytes()).expect("an HTTP method")
}

/// Deserializes `value` into the type of `like` (lets the test name
/// `utoipa::openapi::OpenApi` without depending on utoipa).
fn reparse_as<T: DeserializeOwned>(_like: &T, value: Value) -> T {
    serde_json::from_value(value).expect("the document deserializes back")
}

#[test]
fn document_validates_against_the_openapi_3_1_schema() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0", "the document's OpenAPI version");
    let validator = openapi_31_validator();
    let errors = validation_errors(&validator, &document);
    assert!(
        errors.is_empty(),
        "the OpenAPI document is not valid OpenAPI 3.1 ({} errors):\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(validator.is_valid(&document));
}

#[test]
fn openapi_schema_rejects_broken_documents() {
    let validator = openapi_31_validator();
    let valid = document();
    assert!(
        valid["paths"]["/v1/events"]["post"]["responses"].is_object(),
        "the control needs POST /v1/events to be documented"
    );

    let mut responses_not_an_object = valid.clone();
    responses_not_an_object["paths"]["/v1/events"]["post"]["responses"] = json!("not a responses object");
    let mut without_info = valid.clone();
    without_info.as_object_mut().expect("the document is an object").remove("info");
    let mut openapi_3_0 = valid.clone();
    openapi_3_0["openapi"] = json!("3.0.3");
    let mut unknown_field_in_operation = valid.clone();
    unknown_field_in_operation["paths"]["/v1/events"]["post"]["responds"] = json!({});

    for (what, broken, expected_location) in [
        ("responses replaced by a string", &responses_not_an_object, "/paths/~1v1~1events/post/responses"),
        ("info removed", &without_info, ""),
        ("openapi 3.0.3", &openapi_3_0, "/openapi"),
        ("an unknown operation field", &unknown_field_in_operation, "/paths/~1v1~1events/post"),
    ] {
        assert!(!validator.is_valid(broken), "{what}: accepted");
        let errors: Vec<_> = validator.iter_errors(broken).collect();
        assert!(!errors.is_empty(), "{what}: no error reported");
        let locations: Vec<String> = errors.iter().map(|e| e.instance_path().to_string()).collect();
        assert!(
            locations.iter().any(|l| l.starts_with(expected_location)),
            "{what}: no error at {expected_location:?}; errors at {locations:?}"
        );
    }
}

#[test]
fn document_round_trips_through_utoipa() {
    let generated = switchyard_api::openapi();
    let json = serde_json::to_value(&generated).expect("the document serializes");
    let reparsed = reparse_as(&generated, json.clone());
    let again = serde_json::to_value(&reparsed).expect("the reparsed document serializes");
    assert_eq!(again, json, "the document changes when read back into utoipa::openapi::OpenApi");
}

#[test]
fn document_lists_exactly_the_expected_operations() {
    let expected: Vec<(String, String)> =
        EXPECTED_OPERATIONS.iter().map(|(p, m)| ((*p).to_owned(), (*m).to_owned())).collect();
    let mut sorted = expected.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(expected, sorted, "EXPECTED_OPERATIONS must be sorted and unique");

    let documented = operations(&document());
    let missing: Vec<_> = expected.iter().filter(|o| !documented.contains(o)).collect();
    let unexpected: Vec<_> = documented.iter().filter(|o| !expected.contains(o)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "the document's operations differ from the routes:\n  not documented: {missing:?}\n  \
         documented but not expected: {unexpected:?}"
    );
}

#[tokio::test]
async fn served_document_is_the_generated_one() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("GET /openapi.json is sent");
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.expect("/openapi.json is JSON");
    assert_eq!(served, document(), "GET /openapi.json differs from switchyard_api::openapi()");
}

#[tokio::test]
async fn router_serves_every_documented_operation() {
    let app = spawn_app().await;
    let send = |method: Method, path: String| {
        let request = app
            .client
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(&app.admin_token)
            .header("content-type", "application/json")
            .body("{}");
        async move {
            let response = request.send().await.expect("the request is sent");
            let status = response.status();
            // A stream's body never ends; its status says it is served.
            let streaming = response
                .headers()
                .get("content-type")
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            if streaming {
                return (status, Value::Null);
            }
            let bytes = response.bytes().await.expect("a readable body");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, body)
        }
    };
    let is_fallback = |status: StatusCode, body: &Value| {
        status == StatusCode::NOT_FOUND
            && body["error"]["message"].as_str().is_some_and(|m| m.starts_with(FALLBACK_MESSAGE))
    };

    // Controls: the two ways an unserved operation shows, so the checks below can fail.
    let (status, body) = send(Method::GET, "/v1/no-such-resource".to_owned()).await;
    assert!(is_fallback(status, &body), "an unknown path should reach the fallback: {status} {body}");
    let (status, body) = send(Method::PUT, "/v1/events".to_owned()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "PUT /v1/events is not a route: {body}");

    let documented = operations(&document());
    assert!(!documented.is_empty(), "the document lists no operation");
    let mut failures = Vec::new();
    let paths: BTreeSet<&String> = documented.iter().map(|(p, _)| p).collect();
    for path in paths {
        let url_path = concrete(path);
        for name in PROBED_METHODS {
            let is_documented = documented.contains(&(path.clone(), name.to_owned()));
            let (status, body) = send(method(name), url_path.clone()).await;
            if is_documented {
                if status == StatusCode::METHOD_NOT_ALLOWED || is_fallback(status, &body) {
                    failures.push(format!(
                        "{} {path} is documented but not served ({} {url_path}: {status} {body})",
                        name.to_uppercase(),
                        name.to_uppercase()
                    ));
                }
            } else if status != StatusCode::METHOD_NOT_ALLOWED {
                failures.push(format!(
                    "{} {path} is served but not documented ({} {url_path}: {status} {body})",
                    name.to_uppercase(),
                    name.to_uppercase()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "the router and the document disagree:\n{}", failures.join("\n"));
}
