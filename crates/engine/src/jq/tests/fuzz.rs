//! Random programs from a small grammar of jq's value-building parts, on deep and large
//! inputs: every run answers (an output or an error) in time, and none takes the process down.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};

use super::on_big_stack;
use crate::jq::*;

fn leaf() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        ".",
        "1",
        "\"ab\"",
        "null",
        "[]",
        "{}",
        ".event",
        ".[]?",
        "..",
        "$x",
        "range(5)",
        "range(1e9)",
        "[paths]",
        "tojson",
        "tostring",
        "(tojson | fromjson)",
        "\"[[[[\" * 200",
        "explode",
        "keys?",
        "length",
        "(. * 3)?",
        "\"x\" * 100000",
        "[.[]?] | sort",
        "getpath([\"a\", 0])",
    ])
    .prop_map(str::to_owned)
}

fn program() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 48, 3, |inner| {
        let two = (inner.clone(), inner.clone());
        let count = prop::sample::select(vec!["3", "40", "600", "100000"]);
        prop_oneof![
            two.clone().prop_map(|(a, b)| format!("({a} | {b})")),
            two.clone().prop_map(|(a, b)| format!("({a}, {b})")),
            two.clone().prop_map(|(a, b)| format!("({a} + {b})")),
            two.clone().prop_map(|(a, b)| format!("({a} * {b})")),
            two.clone().prop_map(|(a, b)| format!("({a} == {b})")),
            two.clone().prop_map(|(a, b)| format!("({a} as $x | {b})")),
            inner.clone().prop_map(|a| format!("[{a}]")),
            inner.clone().prop_map(|a| format!("{{a: {a}}}")),
            inner.clone().prop_map(|a| format!("first({a})")),
            inner.clone().prop_map(|a| format!("try ({a}) catch .")),
            inner.clone().prop_map(|a| format!("({a} | fromjson?)")),
            inner.clone().prop_map(|a| format!("[{a}] | sort | unique")),
            (count.clone(), two.clone())
                .prop_map(|(n, (a, b))| format!("reduce range({n}) as $x ({a}; {b})")),
            (count.clone(), two)
                .prop_map(|(n, (a, b))| format!("[limit(50; foreach range({n}) as $x ({a}; {b}))]")),
            (count, inner.clone()).prop_map(|(n, a)| format!("setpath([range({n}) | \"a\"]; {a})?")),
            inner.prop_map(|a| format!("([{a}] | add | tostring | test(\"a+\"))?")),
        ]
    })
}

fn input() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"event": {"payload": {"a": [1, "two", {"three": 3}]}}})),
        Just(nested(127)),
        Just(json!({"event": {"payload": (0..5_000).collect::<Vec<_>>()}})),
        Just(json!({"event": {"payload": "y".repeat(100_000)}})),
    ]
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!("core"), |inner, _| json!([inner]))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_run_answers_in_time(source in program(), input in input()) {
        let started = Instant::now();
        let limits = JqLimits::default();
        let shown = source.clone();
        on_big_stack(move || {
            if let Ok(program) = JqProgram::compile(&source) {
                let _ = program.first_output(&input, &limits);
            }
        });
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{} took {:?}", shown, started.elapsed());
    }
}
