use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

mod fuzz;
mod hostile;

/// Runs on a thread with the stack programs are given in production.
fn on_big_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(work)
        .expect("a thread")
        .join()
        .expect("the work does not panic")
}

fn run_with(source: &str, input: Value, limits: JqLimits) -> Result<Option<Value>, JqRunError> {
    let source = source.to_owned();
    on_big_stack(move || {
        let program = JqProgram::compile(&source).expect("the program compiles");
        program.first_output(&input, &limits)
    })
}

fn run(source: &str) -> Result<Option<Value>, JqRunError> {
    run_with(source, input(), JqLimits::default())
}

fn input() -> Value {
    json!({"event": {"event_id": "e-1", "event_type": "order.created",
                     "payload": {"id": 7, "total": 12.5, "items": ["a", "b"], "note": "Hi"}}})
}

fn compile_error(source: &str) -> String {
    let source = source.to_owned();
    on_big_stack(move || {
        JqProgram::compile(&source).expect_err("the program does not compile").message().to_owned()
    })
}

#[test]
fn transforms_reshape_the_input() {
    assert_eq!(
        run("{id: .event.payload.id, type: .event.event_type, n: (.event.payload.items | length)}").unwrap(),
        Some(json!({"id": 7, "type": "order.created", "n": 2}))
    );
    assert_eq!(run(".event.payload.note | ascii_downcase").unwrap(), Some(json!("hi")));
    assert_eq!(run(".event.payload.note | test(\"^H\")").unwrap(), Some(json!(true)));
    assert_eq!(run(".event.payload.note | @base64").unwrap(), Some(json!("SGk=")));
    assert_eq!(run("[range(3)], [range(0; 10; 4)], [range(3; 0; -1)]").unwrap(), Some(json!([0, 1, 2])));
    assert_eq!(run("[range(0; 10; 4)]").unwrap(), Some(json!([0, 4, 8])));
    assert_eq!(run("[range(3; 0; -1)]").unwrap(), Some(json!([3, 2, 1])));
}

#[test]
fn only_the_first_output_counts_and_none_is_none() {
    assert_eq!(run(".event.payload.items[]").unwrap(), Some(json!("a")));
    assert_eq!(run("empty").unwrap(), None);
    assert_eq!(run("select(.event.payload.id > 100)").unwrap(), None);
    // Outputs after the first are never computed, so their errors do not matter.
    assert_eq!(run("1, error(\"never\")").unwrap(), Some(json!(1)));
}

#[test]
fn raised_errors_carry_their_message() {
    assert_eq!(run(".event.payload.id | error(\"boom\")"), Err(JqRunError::Raised("boom".into())));
    assert_eq!(run("error({code: 1})"), Err(JqRunError::Raised("{\"code\":1}".into())));
    let Err(JqRunError::Raised(message)) = run(".event.payload.note - 1") else {
        panic!("a type error is raised");
    };
    assert!(message.contains("cannot"), "{message}");
}

#[test]
fn endless_and_huge_programs_are_stopped_by_their_budget() {
    // Steps alone (the clock is far away), so the outcome does not depend on the machine.
    let steps = JqLimits { max_steps: 100_000, timeout_ms: 600_000, ..JqLimits::default() };
    for endless in ["[range(1e9)]", "last(range(1e12))", "[repeat(1)]", "def f: f; f", "until(false; .)"] {
        assert_eq!(run_with(endless, input(), steps), Err(JqRunError::Steps(100_000)), "{endless}");
    }
    assert_eq!(run_with("def f: f + 1; f", input(), steps), Err(JqRunError::Recursion));
    assert_eq!(run_with("def f: [f]; f", input(), steps), Err(JqRunError::Recursion));
    // Nesting stops long before the steps run out.
    assert_eq!(run_with("reduce range(1e9) as $i (null; [.])", input(), steps), Err(JqRunError::TooDeep));
    // The clock alone.
    let slow = JqLimits { max_steps: u64::MAX, timeout_ms: 50, ..JqLimits::default() };
    let started = Instant::now();
    assert_eq!(run_with("[range(1e12)] | length", input(), slow), Err(JqRunError::Timeout(50)));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The defaults stop it one way or the other, in about the time limit.
    let started = Instant::now();
    assert!(matches!(run("[range(1e9)]"), Err(JqRunError::Steps(_) | JqRunError::Timeout(_))));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn outputs_are_bounded_json() {
    let small = JqLimits { max_output_bytes: 64, ..JqLimits::default() };
    assert_eq!(run_with("[range(100)]", input(), small), Err(JqRunError::OutputTooLarge(64)));
    assert_eq!(run_with("[range(10)]", input(), small).unwrap(), Some(json!([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])));
    assert_eq!(run("reduce range(200) as $i (0; [.])"), Err(JqRunError::OutputTooDeep));
    assert!(run("reduce range(100) as $i (0; [.])").unwrap().is_some());
    assert!(matches!(run("nan"), Ok(Some(Value::Null)) | Err(JqRunError::NotJson(_))), "{:?}", run("nan"));
}

#[test]
fn natives_that_reach_outside_are_replaced() {
    assert_eq!(run("env"), Err(JqRunError::Raised("env is not available".into())));
    assert_eq!(run("halt"), Err(JqRunError::Raised("halt is not available".into())));
    assert_eq!(run("halt_error"), Err(JqRunError::Raised("halt is not available".into())));
    assert_eq!(run("1 | debug | stderr").unwrap(), Some(json!(1)));
    assert!(compile_error("$ENV").contains("undefined variable $ENV"), "{}", compile_error("$ENV"));
    assert!(compile_error("input").contains("undefined filter input/0"));
}

#[test]
fn compile_errors_say_what_and_where() {
    let unclosed = compile_error(".event | {a: .b");
    assert!(unclosed.contains("expected"), "{unclosed}");
    let undefined = compile_error(".event | frobnicate(1)");
    assert_eq!(undefined, "undefined filter frobnicate/1 at character 10");
    let junk = compile_error("if . then 1");
    assert!(junk.contains("else or end"), "{junk}");
    assert_eq!(compile_error("  "), "is empty; leave it null for none");
    assert!(compile_error(&".a".repeat(MAX_SOURCE_BYTES)).contains("longer than"));
    // Deep nesting within the size limit compiles (or fails) without exhausting the stack.
    let nested = format!("{}1{}", "[".repeat(MAX_SOURCE_BYTES / 2 - 1), "]".repeat(MAX_SOURCE_BYTES / 2 - 1));
    on_big_stack(move || JqProgram::compile(&nested).map(|_| ()).map_err(|e| e.message().to_owned()))
        .expect("a deeply nested literal compiles");
}

#[tokio::test]
async fn compiling_off_the_runtime_answers_the_same() {
    assert!(compile(".event".to_owned()).await.is_ok());
    assert!(compile(".event |".to_owned()).await.unwrap_err().message().contains("expected"));
    let program = compile(".event.payload.id".to_owned()).await.unwrap();
    let answer = on_jq_thread(move || program.first_output(&input(), &JqLimits::default())).await.unwrap();
    assert_eq!(answer.unwrap(), Some(json!(7)));
}
