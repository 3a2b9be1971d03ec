"""Schemathesis hooks for `scripts/fuzz-api`.

The OpenAPI document declares every constraint a JSON Schema can hold. What it cannot hold is
supplied here, for the requests the fuzzer means to be valid (its positive cases) and nothing
else: values that must name something that exists, that must compile (jq programs, JSON
Schemas), the transport configuration each `kind` needs, and rules across fields. Its negative
cases go out as generated, so the server's refusals are tested unaltered.
"""

import base64
import os
import uuid

import jsonschema
import schemathesis
from hypothesis import strategies as st

# Keyset cursors are opaque to clients; the fuzzer needs well-formed ones to get past them.
schemathesis.openapi.format(
    "cursor",
    st.integers(min_value=0, max_value=2**62).map(
        lambda seq: base64.urlsafe_b64encode(f"c1:{seq}".encode()).decode().rstrip("=")
    ),
)

schemathesis.openapi.format(
    "jq",
    st.sampled_from(
        [
            ".",
            "true",
            ".event",
            ".event.payload",
            '.event.event_type == "order.created"',
            "{id: .event.event_id, type: .event.event_type}",
            "(.event.payload.total // 0) > 100",
        ]
    ),
)

# Every host ends in `.invalid` (RFC 2606): it resolves nowhere, so the SSRF guard accepts it
# when written and no delivery can reach anything.
DESTINATION_CONFIGS = {
    "http": {"url": "https://receiver.invalid/hooks"},
    "nats": {"url": "nats://broker.invalid:4222", "subject": "fuzz.events"},
    "amqp": {"url": "amqp://broker.invalid:5672", "exchange": "fuzz", "routing_key": "events"},
    "redis": {"url": "redis://broker.invalid:6379", "stream": "fuzz"},
    "mqtt": {"url": "mqtt://broker.invalid:1883", "topic": "fuzz/events"},
}

SOURCE_CONFIGS = {
    "webhook": {"verification": {"type": "none"}, "event_type": {"value": "fuzz.received"}},
}

# Created by the script before the run: subscriptions must name an existing destination.
DESTINATION_ID = os.environ.get("FUZZ_DESTINATION_ID")


def _positive(case):
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _at_most(body, field, low_field, low_default, high_field, high_default):
    """Keeps `low_field <= high_field` in `body[field]`, which no JSON Schema can say."""
    policy = body.get(field)
    if not isinstance(policy, dict):
        return
    low = policy.get(low_field)
    high = policy.get(high_field)
    low = low_default if low is None else low
    high = high_default if high is None else high
    if isinstance(low, int) and isinstance(high, int) and low > high:
        policy[low_field] = high


def _destination(body):
    kind = body.get("kind")
    if kind in DESTINATION_CONFIGS:
        body["config"] = dict(DESTINATION_CONFIGS[kind])
    _at_most(body, "retry", "initial_delay_ms", 1_000, "max_delay_ms", 3_600_000)
    _at_most(body, "circuit_breaker", "cooldown_ms", 30_000, "max_cooldown_ms", 600_000)
    timeout = body.get("timeout_ms")
    timeout = 30_000 if timeout is None else timeout
    connect = body.get("connect_timeout_ms")
    if isinstance(connect, int) and isinstance(timeout, int) and connect > timeout:
        body["connect_timeout_ms"] = timeout


def _source(body):
    # A pull source's broker or database is reached when the source is written, and none is
    # reachable from the fuzzer's network namespace.
    if body.get("kind") in ("outbox", "nats", "amqp"):
        body["kind"] = "webhook"
    kind = body.get("kind")
    if kind in SOURCE_CONFIGS:
        body["config"] = dict(SOURCE_CONFIGS[kind])


def _subscription(body):
    if DESTINATION_ID and "destination_id" in body:
        body["destination_id"] = DESTINATION_ID


def _event_type(body, path_name):
    schema = body.get("schema")
    if schema is not None:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError:
            body["schema"] = {"type": "object"}
    if path_name is not None and body.get("name") is not None:
        body["name"] = path_name


# Fields a resource cannot lose: a merge patch that removes one is refused.
REQUIRED = {"name", "kind", "config", "destination_id", "event_types"}


def _integers(value):
    """`95.0` for an integer field: JSON Schema counts it as one, the server reads integers
    strictly and refuses it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def _merge_patch(body, path):
    for field in list(body):
        if field in REQUIRED and body[field] is None:
            del body[field]
    # A patch does not know the stored values its fields must agree with: the kind `config`
    # must suit, the timeout a connect timeout must not exceed, the delays of a policy.
    if path in ("/v1/destinations/{id}", "/v1/sources/{id}"):
        for field in ("kind", "config", "timeout_ms", "connect_timeout_ms", "retry", "circuit_breaker"):
            body.pop(field, None)


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _positive(case):
        return
    # A reused Idempotency-Key replays the first answer, which may name a resource deleted since:
    # keys are made unique so each create creates. Replays have tests of their own.
    headers = case.headers
    if headers is not None and isinstance(headers.get("Idempotency-Key"), str):
        headers["Idempotency-Key"] = headers["Idempotency-Key"][:223] + uuid.uuid4().hex
    query = case.query
    # A page is asked for by number or after a cursor, never both.
    if isinstance(query, dict) and query.get("after") is not None:
        query.pop("page", None)
    if not isinstance(case.body, dict):
        return
    case.body = _integers(case.body)
    body = case.body
    method = case.operation.method.upper()
    path = case.operation.path
    if method == "PATCH":
        _merge_patch(body, path)
    elif method not in ("POST", "PUT"):
        return
    if path in ("/v1/destinations", "/v1/destinations/{id}"):
        _destination(body)
    elif path in ("/v1/sources", "/v1/sources/{id}"):
        _source(body)
    elif path in ("/v1/subscriptions", "/v1/subscriptions/{id}"):
        _subscription(body)
    elif path == "/v1/event-types":
        _event_type(body, None)
    elif path == "/v1/event-types/{name}" and method == "PATCH":
        body.pop("name", None)
        _event_type(body, None)
    elif path == "/v1/event-types/{name}":
        _event_type(body, (case.path_parameters or {}).get("name"))
