//! jq programs: a subscription's `filter` and `transform`, compiled with jaq when the
//! subscription is written and run on `{"event": {...}}` before each send.
//!
//! A `JqProgram` exists only compiled: `JqProgram::compile` rejects what does not parse or
//! names an undefined filter, with a message that says where. Running one is bounded by
//! `JqLimits` in a way the program cannot escape; no program and no input can take the process
//! down:
//!
//! - every step of the interpreter (each call, pipe, comma, iteration, and each number `range`
//!   yields) clones the run's context, and the context's `Clone` counts it (`budget`): past
//!   the step budget, or a recursion depth (how much stack the run has used), the run ends;
//! - values are `Bounded` (`value`): each knows a bound of how deeply it is nested, and none
//!   deeper than `MAX_VALUE_DEPTH` is ever built (by constructors, updates, `fromjson` …), so
//!   whatever walks a value recursively (writing, comparing, dropping) fits the stack;
//! - whatever allocates (constructors, concatenation, repetition, `tojson`, `explode`, regular
//!   expressions, …) charges the run's memory budget, `max_memory_bytes`, before or as it
//!   builds; the budget is cumulative, so a run can never hold more than it;
//! - work that one operation does (comparing, searching, copying) counts too, and the clock is
//!   read every fraction of a millisecond of work: a run stops at its time limit whatever it
//!   is doing, and as soon as the caller stops waiting for it (`on_jq_thread`);
//! - the output is written through a writer that stops at `max_output_bytes` and must be JSON
//!   nested at most 128 levels deep.
//!
//! A run that goes past a limit is unwound (`budget`) and answered as a `JqRunError` saying
//! which limit. The natives that would reach outside the program are replaced: `env` and
//! `halt` raise an error, `debug` and `stderr` print nothing, `input` and `$ENV` do not exist.
//! Everything else of jaq's standard library (regular expressions, dates, `@base64` …) is
//! there, with jaq's semantics, except that object keys are scalars (as in jq).
//!
//! The interpreter recurses on the native stack; compiling and running therefore belong on a
//! thread with `STACK_BYTES` of stack, which `on_jq_thread` provides without blocking the
//! async runtime. The budget stops a run at a fraction of that.

mod budget;
mod json;
mod messages;
mod natives;
mod ops;
mod regex;
mod value;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jaq_core::data::HasLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, DataT, Lut, Vars};
use jaq_json::Val;
use serde_json::Value;

use budget::Exhausted;
use json::OutputError;
use messages::{compile_errors, load_errors, message_of, panic_message, truncated};
pub use ops::MAX_INT_BITS;
use value::Bounded;
pub use value::MAX_VALUE_DEPTH;

/// The longest program accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// The stack of a thread that compiles or runs programs (address space: only the pages a run
/// touches are ever allocated).
pub const STACK_BYTES: usize = 256 << 20;
/// The deepest nesting an output may have (`serde_json` reads no deeper).
pub const MAX_OUTPUT_DEPTH: usize = 128;
/// The memory budget of a run, as a multiple of the largest payload: room for a few copies of
/// a payload-sized value in each of the shapes a transform builds on the way to its output
/// (strings, arrays of elements, objects of entries), while two runs at once (one per CPU)
/// stay within a few tens of megabytes for the default 256 KiB payloads.
pub const MEMORY_PER_PAYLOAD_BYTE: usize = 64;

/// How far one run of a program may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Interpreter steps (see the module documentation).
    pub max_steps: u64,
    /// Wall-clock time of one run.
    pub timeout_ms: u64,
    /// Size of the output written as JSON.
    pub max_output_bytes: usize,
    /// Bytes a run may allocate for the values it builds, all together.
    pub max_memory_bytes: usize,
}

impl JqLimits {
    /// The limits for payloads of at most `max_payload_bytes`: outputs as large, and memory
    /// `MEMORY_PER_PAYLOAD_BYTE` times that.
    pub fn for_payloads(max_payload_bytes: usize) -> Self {
        Self {
            max_output_bytes: max_payload_bytes,
            max_memory_bytes: max_payload_bytes.saturating_mul(MEMORY_PER_PAYLOAD_BYTE),
            ..Self::default()
        }
    }
}

impl Default for JqLimits {
    fn default() -> Self {
        let max_output_bytes = 256 * 1024;
        Self {
            max_steps: 1_000_000,
            timeout_ms: 100,
            max_output_bytes,
            max_memory_bytes: max_output_bytes * MEMORY_PER_PAYLOAD_BYTE,
        }
    }
}

/// Why a program does not compile; the message names each problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JqCompileError {
    message: String,
}

impl JqCompileError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why a run produced no usable output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JqRunError {
    /// The program raised an error (`error(…)`, or an operation on the wrong type).
    #[error("{0}")]
    Raised(String),
    #[error("it used up its budget of {0} steps")]
    Steps(u64),
    #[error("it ran longer than its time limit of {0} ms")]
    Timeout(u64),
    #[error("it recursed too deeply")]
    Recursion,
    #[error("it needed more than its memory budget of {0} bytes")]
    Memory(usize),
    #[error("it built a value nested deeper than {MAX_VALUE_DEPTH} levels")]
    TooDeep,
    #[error("it was stopped: its answer was no longer awaited")]
    Abandoned,
    #[error("its output is larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("its output is nested deeper than {MAX_OUTPUT_DEPTH} levels")]
    OutputTooDeep,
    #[error("its output is not JSON: {0}")]
    NotJson(String),
    /// The interpreter itself failed (a bug in it).
    #[error("the jq interpreter failed: {0}")]
    Crashed(String),
    /// No thread could be started to run it.
    #[error("no thread could run it: {0}")]
    NoThread(String),
}

/// A compiled jq program and its source. Shareable across threads; each run builds its own
/// values.
pub struct JqProgram {
    source: String,
    filter: jaq_core::Filter<Metered>,
}

impl fmt::Debug for JqProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JqProgram").field(&self.source).finish()
    }
}

impl JqProgram {
    /// Parses and compiles `source`. Recursive on the native stack: call it from a thread
    /// with `STACK_BYTES` (`on_jq_thread`); sources are at most `MAX_SOURCE_BYTES`, which that
    /// stack holds at any nesting.
    pub fn compile(source: &str) -> Result<Self, JqCompileError> {
        if source.trim().is_empty() {
            return Err(JqCompileError::new("is empty; leave it null for none"));
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(JqCompileError::new(format!("is longer than {MAX_SOURCE_BYTES} bytes")));
        }
        let defs = jaq_core::defs()
            .chain(regex::guard_defs())
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(regex::closing_defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code: source, path: () })
            .map_err(|errors| JqCompileError::new(load_errors(source, errors)))?;
        let filter = Compiler::default()
            .with_funs(natives::all())
            .compile(modules)
            .map_err(|errors| JqCompileError::new(compile_errors(source, errors)))?;
        Ok(Self { source: source.to_owned(), filter })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on `input` and answers its first output (`None` when it yields
    /// nothing); later outputs are never computed. Never panics and always returns within
    /// the limits. Run it on a thread with `STACK_BYTES` of stack (`on_jq_thread`).
    pub fn first_output(&self, input: &Value, limits: &JqLimits) -> Result<Option<Value>, JqRunError> {
        let input = input_of(input)?;
        budget::begin(limits);
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            let ctx = Ctx::<Metered>::new(Meter { lut: &self.filter.lut }, Vars::new([]));
            self.filter.id.run((ctx, input)).next().map(|first| first.map_err(|exn| exn.get_err()))
        }));
        // What follows is bounded by construction, and must not be stopped half-way.
        budget::end();
        match run {
            Ok(None) => Ok(None),
            Ok(Some(Ok(value))) => output_of(&value, limits).map(Some),
            Ok(Some(Err(Ok(error)))) => Err(JqRunError::Raised(message_of(error))),
            Ok(Some(Err(Err(_)))) => Err(JqRunError::Crashed("the program stopped with no error".to_owned())),
            Err(payload) => Err(match payload.downcast::<Exhausted>() {
                Ok(exhausted) => match *exhausted {
                    Exhausted::Steps => JqRunError::Steps(limits.max_steps),
                    Exhausted::Time => JqRunError::Timeout(limits.timeout_ms),
                    Exhausted::Stack => JqRunError::Recursion,
                    Exhausted::Memory => JqRunError::Memory(limits.max_memory_bytes),
                    Exhausted::Depth => JqRunError::TooDeep,
                    Exhausted::Abandoned => JqRunError::Abandoned,
                },
                Err(other) => JqRunError::Crashed(panic_message(other.as_ref())),
            }),
        }
    }
}

/// The input as a value of a run, with the depth it has.
fn input_of(input: &Value) -> Result<Bounded, JqRunError> {
    let mut deepest = 0;
    let mut pending = vec![(input, 0_u32)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(entries) => Box::new(entries.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        if deepest > MAX_VALUE_DEPTH {
            return Err(JqRunError::TooDeep);
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    let val: Val = serde_json::from_value(input.clone())
        .map_err(|e| JqRunError::Crashed(format!("the input cannot be read: {e}")))?;
    Ok(Bounded::nested(val, deepest))
}

fn output_of(value: &Bounded, limits: &JqLimits) -> Result<Value, JqRunError> {
    json::output(value, limits.max_output_bytes, MAX_OUTPUT_DEPTH).map_err(|e| match e {
        OutputError::TooLarge => JqRunError::OutputTooLarge(limits.max_output_bytes),
        OutputError::TooDeep => JqRunError::OutputTooDeep,
        OutputError::NotJson(why) => JqRunError::NotJson(truncated(why)),
    })
}

/// Runs `work` on a thread of its own with `STACK_BYTES` of stack and waits for it without
/// blocking the async runtime. If the caller stops waiting (the future is dropped), a run in
/// progress on the thread stops too, within a fraction of a millisecond of work.
pub async fn on_jq_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JqRunError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let abandoned = Arc::new(AtomicBool::new(false));
    let watched = abandoned.clone();
    std::thread::Builder::new()
        .name("jq".to_owned())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            budget::watch(watched);
            let _ = tx.send(work());
        })
        .map_err(|e| JqRunError::NoThread(e.to_string()))?;
    let _abandon_when_dropped = AbandonOnDrop(abandoned);
    rx.await.map_err(|_| JqRunError::Crashed("the jq thread ended without an answer".to_owned()))
}

/// Tells the jq thread its answer is no longer awaited, once it is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Compiles `source` on a jq thread (see `JqProgram::compile`).
pub async fn compile(source: String) -> Result<JqProgram, JqCompileError> {
    on_jq_thread(move || JqProgram::compile(&source))
        .await
        .unwrap_or_else(|e| Err(JqCompileError::new(format!("could not be compiled: {e}"))))
}

/// Values are `Bounded`; the context's global data is a `Meter`.
struct Metered;

impl DataT for Metered {
    type V<'a> = Bounded;
    type Data<'a> = Meter<'a>;
}

/// Carried in every context: cloning it is a step of the run.
struct Meter<'a> {
    lut: &'a Lut<Metered>,
}

impl Clone for Meter<'_> {
    fn clone(&self) -> Self {
        budget::step();
        Self { lut: self.lut }
    }
}

impl<'a> HasLut<'a, Metered> for Meter<'a> {
    fn lut(&self) -> &'a Lut<Metered> {
        self.lut
    }
}

#[cfg(test)]
mod tests;
