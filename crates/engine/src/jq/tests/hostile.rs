//! Programs written to take the process down: each is answered with the reason it stopped.
//! A regression aborts this test binary, which is the point.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{input, run, run_with};
use crate::jq::*;

/// Runs `source` with the default limits and answers its error, checking it came in time.
fn stopped(source: &str) -> JqRunError {
    let started = Instant::now();
    let answer = run(source);
    assert!(started.elapsed() < Duration::from_secs(5), "{source} took {:?}", started.elapsed());
    answer.expect_err(source)
}

fn raised(source: &str) -> String {
    match stopped(source) {
        JqRunError::Raised(message) => message,
        other => panic!("{source} should raise an error, not {other:?}"),
    }
}

#[test]
fn deep_json_text_is_refused_before_it_is_parsed() {
    let message = raised(r#"("[" * 500000 + "]" * 500000) | fromjson | tojson | length"#);
    assert!(message.contains("nested deeper than 512 levels"), "{message}");
    assert!(message.len() < 2 * messages_limit(), "the text is not repeated whole: {}", message.len());
    let message = raised(r#"("[" * 600 + "]" * 600) | tonumber"#);
    assert!(message.contains("nested deeper"), "{message}");
    let message = raised(r#""1" * 100000 | fromjson"#);
    assert!(message.contains("more than 4096 digits"), "{message}");
    // Deep, but within the bound: parsed, and still too deep to be an output.
    assert_eq!(stopped(r#"("[" * 500 + "]" * 500) | fromjson"#), JqRunError::OutputTooDeep);
    assert_eq!(run(r#""[[1, {\"a\": [2]}]] 3" | [fromjson]"#).unwrap(), Some(json!([[[1, {"a": [2]}]], 3])));
    // The parser stops at the first error, rather than repeating it for ever.
    assert_eq!(run(r#"[try ("1 ab" | fromjson) catch "failed"]"#).unwrap(), Some(json!([1, "failed"])));
}

fn messages_limit() -> usize {
    super::super::messages::MAX_MESSAGE
}

#[test]
fn values_built_deeper_than_the_bound_stop_the_run() {
    for deep in [
        "reduce range(300000) as $i ([]; [.]) | tojson",
        "reduce range(300000) as $i (null; {a: .}) | tostring",
        "reduce range(300000) as $i (null; {(\"k\"): [.]}) | \"\\(.)\"",
        "reduce range(100000) as $i (0; setpath([]; [.]))",
        "reduce range(100000) as $i ([0]; .[0] |= [.])",
        "reduce range(100000) as $i ({}; .a = .)",
        "reduce range(100000) as $i ([]; [.] + [.]) | sort",
        "reduce range(100000) as $i (null; [.]) | . == .",
        "[limit(600; repeat(0))] | reduce .[] as $x (null; {($x | tostring): .}) | @json",
    ] {
        assert_eq!(stopped(deep), JqRunError::TooDeep, "{deep}");
    }
    // What stays within the bound works as before.
    assert!(run("reduce range(500) as $i (0; [.]) | tojson | length").unwrap().is_some());
}

#[test]
fn allocations_past_the_memory_budget_stop_the_run() {
    // A smaller budget than the default, for speed: the default is in the end-to-end tests.
    let budget = 1 << 20;
    let patient =
        JqLimits { max_steps: u64::MAX, timeout_ms: 30_000, max_memory_bytes: budget, ..JqLimits::default() };
    for bomb in [
        "\"a\" * 2000000000 | length",
        "\"x\" * 1000000000",
        "\"ab\" * 4611686018427387904",
        "reduce range(40) as $i (\"x\"; . + .) | length",
        "reduce range(40) as $i ([1]; . + .) | length",
        "reduce range(30) as $i ([range(1000)]; [., .]) | tojson",
        "reduce range(40) as $i (\"x\"; [., .]) | tostring | length",
        "reduce range(40) as $i (\"x\"; [., .]) | \"\\(.)\" | length",
        "reduce range(40) as $i (\"x\"; [., .]) | @base64 | length",
        "reduce range(24) as $i ([128512]; . + .) | implode",
        "reduce range(30) as $i ([\"aaaaaaaa\"]; . + .) | join(\",\") | length",
        "reduce range(30) as $i (\"x\"; [., .]) | [..] | length",
        "reduce range(30) as $i (\"x\"; [., .]) | [paths] | length",
        "(\"a\" * 1000000) as $s | [range(1000) | $s] | add | length",
        "(\"ab\" * 500000) | explode | length",
        "(\"a,\" * 2000000) | split(\",\") | length",
        "(\"a\" * 2000000) | [match(\"a\"; \"g\")] | length",
        "reduce range(30) as $i ([\"x\"]; [.[], .[]]) | tobytes | length",
    ] {
        // With time to spare, so that the memory budget alone stops them.
        let started = Instant::now();
        let stopped = run_with(bomb, input(), patient);
        assert!(started.elapsed() < Duration::from_secs(10), "{bomb} took {:?}", started.elapsed());
        assert_eq!(stopped, Err(JqRunError::Memory(budget)), "{bomb}");
    }
    assert!(JqRunError::Memory(budget).to_string().contains("memory budget of 1048576 bytes"));
}

#[test]
fn single_costly_operations_stop_at_the_time_limit() {
    let slow =
        JqLimits { max_steps: u64::MAX, timeout_ms: 100, max_memory_bytes: 1 << 30, ..JqLimits::default() };
    for costly in [
        // Equal structures sharing their parts: 2^40 elements to compare.
        "(reduce range(40) as $i (1; [., .])) as $a | reduce range(40) as $i (1; [., .]) | . == $a",
        "(reduce range(40) as $i (1; [., .])) as $a | reduce range(40) as $i (1; [., .]) | [., $a] | sort",
        "(reduce range(40) as $i (1; [., .])) as $a | [reduce range(40) as $i (1; [., .])] | contains([$a])",
        "(reduce range(40) as $i (1; [., .])) as $a | [range(50000) | $a] | indices([range(25000) | $a])",
        "(\"a\" * 1000000) as $s | $s | indices(\"a\" * 500000 + \"b\")",
        // Text of 2^40 strings: writing it would take hours.
        "reduce range(40) as $i (\"x\"; [., .]) | tojson | length",
        "reduce range(40) as $i (\"x\"; [., .]) | tostring | length",
    ] {
        let started = Instant::now();
        let answer = run_with(costly, input(), slow);
        assert_eq!(answer, Err(JqRunError::Timeout(100)), "{costly}");
        assert!(started.elapsed() < Duration::from_secs(2), "{costly}: {:?}", started.elapsed());
    }
}

#[test]
fn hostile_values_give_short_errors_and_integers_stay_small() {
    let message = raised("reduce range(40) as $i (\"x\"; [., .]) | error");
    assert!(message.len() <= messages_limit() + 4, "{}", message.len());
    let message = raised("reduce range(500) as $i (0; [.]) | error");
    assert!(message.starts_with("[[[[") && message.ends_with('…'), "{message}");
    let message = raised("(\"a\" * 1000000) - 1");
    assert!(message.starts_with("cannot calculate \"aaaa") && message.len() < 600, "{message}");
    let message = raised("{([1]): 2}");
    assert!(message.contains("as object key"), "{message}");
    let message = raised("reduce range(30) as $i (3; . * .)");
    assert!(message.contains("more than 16384 bits"), "{message}");
    let message = raised("{a: 1} | has([1])");
    assert!(message.contains("as object key"), "{message}");
}

#[test]
fn the_usual_operations_keep_jaq_semantics() {
    let cases = [
        ("[3, 1, [2], {\"a\": 1}, null, \"s\"] | sort", json!([null, 1, 3, "s", [2], {"a": 1}])),
        ("[{\"b\": 1, \"a\": 2}, {\"a\": 2, \"b\": 0}] | sort | .[0].b", json!(0)),
        ("{\"a\": [1, 2]} == {\"a\": [1, 2]}", json!(true)),
        ("[1, 2, 3, 1, 2] | indices([1, 2])", json!([0, 3])),
        ("\"a,b, cd, efg\" | indices(\", \")", json!([3, 7])),
        ("[1, 2, 3, 4] - [2, 4]", json!([1, 3])),
        ("\"ab\" * 3", json!("ababab")),
        ("\"ab\" * 0", json!(null)),
        ("{\"a\": {\"b\": 1}} * {\"a\": {\"c\": 2}}", json!({"a": {"b": 1, "c": 2}})),
        ("\"a, b,c\" / \", \"", json!(["a", "b,c"])),
        ("[1, [2, 3]] | contains([[3]])", json!(true)),
        ("{\"a\": 1} | has(\"a\"), has(\"b\")", json!(true)),
        ("[0, 1] | has(1), has(2)", json!(true)),
        ("[1, 2, 3] | bsearch(2), bsearch(0)", json!(1)),
        ("[1, 2, 3] | bsearch(0)", json!(-1)),
        ("[-5, \"ab\", [1], {\"a\": 1}, null] | map(length)", json!([5, 2, 1, 1, 0])),
        ("[65, [66, 67]] | tobytes | length", json!(3)),
        ("[1, [2]] | tojson, tostring", json!("[1,[2]]")),
        ("\"[1, {\\\"a\\\": 2}] # a comment\" | fromjson", json!([1, {"a": 2}])),
        ("{a: 1, b: {}} | .b.c = 2 | .a += 1", json!({"a": 2, "b": {"c": 2}})),
        ("[1, 2, 3] | .[1:] |= map(. * 10)", json!([1, 20, 30])),
        ("[[1, 2], [3]] | .[] |= length", json!([2, 1])),
        ("{a: [1, {b: 2}]} | [paths]", json!([["a"], ["a", 0], ["a", 1], ["a", 1, "b"]])),
        ("[.event.payload | .. | numbers]", json!([7, 12.5])),
        ("\"a-b-c\" | [splits(\"-\")] | join(\"+\")", json!("a+b+c")),
        ("[3, 1, 2] | unique, group_by(. % 2)", json!([1, 2, 3])),
        ("9223372036854775807 + 1 | . - 1", json!(9223372036854775807_i64)),
        ("try error({a: 1}) catch .a", json!(1)),
        ("try ([] | .a) catch .", json!("cannot index [] with \"a\"")),
    ];
    for (source, expected) in cases {
        assert_eq!(run(source), Ok(Some(expected)), "{source}");
    }
}

#[test]
fn a_run_stops_when_its_answer_is_no_longer_awaited() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    let (done, finished) = mpsc::channel();
    runtime.block_on(async move {
        let endless = JqLimits { max_steps: u64::MAX, timeout_ms: 600_000, ..JqLimits::default() };
        let program = compile("last(range(1e15))".to_owned()).await.expect("it compiles");
        let waiting = on_jq_thread(move || {
            let answer = program.first_output(&input(), &endless);
            let _ = done.send(answer);
        });
        assert!(tokio::time::timeout(Duration::from_millis(100), waiting).await.is_err(), "it runs on");
    });
    let answer = finished.recv_timeout(Duration::from_secs(5)).expect("the thread stops soon after");
    assert_eq!(answer, Err(JqRunError::Abandoned));
}
