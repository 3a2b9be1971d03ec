//! jq programs: a subscription's `filter` and `transform`, compiled with jaq when the
//! subscription is written and run on `{"event": {...}}` before each send.
//!
//! A `JqProgram` exists only compiled: `JqProgram::compile` rejects what does not parse or
//! names an undefined filter, with a message that says where. Running one is bounded by
//! `JqLimits` in a way the program cannot escape:
//!
//! - every step of the interpreter (each call, pipe, comma, iteration, and each number `range`
//!   yields) clones the run's context, and the context's `Clone` is metered: past the step
//!   budget, the time limit (the clock is read every few hundred steps) or a recursion depth
//!   (how much stack the run has used) it unwinds the run, which `first_output` catches and
//!   answers as a `JqRunError`;
//! - the output is written through a writer that stops at `max_output_bytes` and must be JSON
//!   nested at most 128 levels deep (checked before anything recursive touches it).
//!
//! The natives that would reach outside the program are replaced: `env` and `halt` raise an
//! error, `debug` and `stderr` print nothing, `input` and `$ENV` do not exist. Everything else
//! of jaq's standard library (regular expressions, dates, `@base64` …) is there.
//!
//! The interpreter recurses on the native stack and values can be nested as deep as the step
//! budget allows; compiling and running therefore belong on a thread with `STACK_BYTES` of
//! stack, which `on_jq_thread` provides without blocking the async runtime. The guard stops a
//! run at a fraction of that, and the remainder is what dropping a deep value needs.
//!
//! One gap remains: a single built-in operation on values is not metered, so string
//! repetition (`"x" * 1e9`) allocates what it is asked to before the output check sees it.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use jaq_core::data::HasLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::native::{self, Fun};
use jaq_core::{Compiler, Ctx, Cv, DataT, Error, Exn, Lut, ValXs, Vars};
use jaq_json::Val;
use serde_json::Value;

/// The longest program accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// The stack of a thread that compiles or runs programs (address space: only the pages a run
/// touches are ever allocated).
pub const STACK_BYTES: usize = 256 << 20;
/// How much of that stack a run may use before it is stopped as too deeply recursive.
const STACK_GUARD: usize = 8 << 20;
/// The deepest nesting an output may have (`serde_json` reads no deeper).
pub const MAX_OUTPUT_DEPTH: usize = 128;
/// Steps between two readings of the clock.
const CLOCK_EVERY: u64 = 256;
/// The longest error message kept from a failed run.
const MAX_MESSAGE: usize = 1_024;

/// How far one run of a program may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Interpreter steps (see the module documentation).
    pub max_steps: u64,
    /// Wall-clock time of one run.
    pub timeout_ms: u64,
    /// Size of the output written as JSON.
    pub max_output_bytes: usize,
}

impl Default for JqLimits {
    fn default() -> Self {
        Self { max_steps: 1_000_000, timeout_ms: 100, max_output_bytes: 256 * 1024 }
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
    #[error("its output is larger than {0} bytes")]
    OutputTooLarge(usize),
    #[error("its output is nested deeper than {MAX_OUTPUT_DEPTH} levels")]
    OutputTooDeep,
    #[error("its output is not JSON: {0}")]
    NotJson(String),
    /// The interpreter itself failed (a bug in it, or memory exhausted for a value).
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
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code: source, path: () })
            .map_err(|errors| JqCompileError::new(load_errors(source, errors)))?;
        let filter = Compiler::default()
            .with_funs(natives())
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
        let budget = Budget::new(limits);
        let run = panic::catch_unwind(AssertUnwindSafe(|| {
            let input: Val = serde_json::from_value(input.clone())
                .map_err(|e| JqRunError::Crashed(format!("the input cannot be read: {e}")))?;
            let ctx = Ctx::<Metered>::new(Meter { lut: &self.filter.lut, budget: &budget }, Vars::new([]));
            let first = self.filter.id.run((ctx, input)).next();
            match first {
                None => Ok(None),
                Some(Ok(value)) => to_json(&value, limits.max_output_bytes).map(Some),
                Some(Err(exn)) => Err(match exn.get_err() {
                    Ok(error) => JqRunError::Raised(message_of(error)),
                    Err(_) => JqRunError::Crashed("the program stopped with no error".to_owned()),
                }),
            }
        }));
        run.unwrap_or_else(|payload| {
            Err(match payload.downcast::<Exhausted>() {
                Ok(exhausted) => match *exhausted {
                    Exhausted::Steps => JqRunError::Steps(limits.max_steps),
                    Exhausted::Time => JqRunError::Timeout(limits.timeout_ms),
                    Exhausted::Stack => JqRunError::Recursion,
                },
                Err(other) => JqRunError::Crashed(panic_message(other.as_ref())),
            })
        })
    }
}

/// Runs `work` on a thread of its own with `STACK_BYTES` of stack and waits for it without
/// blocking the async runtime.
pub async fn on_jq_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JqRunError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("jq".to_owned())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| JqRunError::NoThread(e.to_string()))?;
    rx.await.map_err(|_| JqRunError::Crashed("the jq thread ended without an answer".to_owned()))
}

/// Compiles `source` on a jq thread (see `JqProgram::compile`).
pub async fn compile(source: String) -> Result<JqProgram, JqCompileError> {
    on_jq_thread(move || JqProgram::compile(&source))
        .await
        .unwrap_or_else(|e| Err(JqCompileError::new(format!("could not be compiled: {e}"))))
}

// ---- the metered interpreter --------------------------------------------------------------

/// Values are jaq's JSON values; the context's global data is a `Meter`.
struct Metered;

impl DataT for Metered {
    type V<'a> = Val;
    type Data<'a> = Meter<'a>;
}

/// The run's budget, carried in every context: cloning it is a step.
struct Meter<'a> {
    lut: &'a Lut<Metered>,
    budget: &'a Budget,
}

impl Clone for Meter<'_> {
    fn clone(&self) -> Self {
        self.budget.tick();
        Self { lut: self.lut, budget: self.budget }
    }
}

impl<'a> HasLut<'a, Metered> for Meter<'a> {
    fn lut(&self) -> &'a Lut<Metered> {
        self.lut
    }
}

/// What ended a run early; the payload of the unwinding `Budget::tick` starts.
#[derive(Debug, Clone, Copy)]
enum Exhausted {
    Steps,
    Time,
    Stack,
}

struct Budget {
    steps: Cell<u64>,
    max_steps: u64,
    deadline: Instant,
    stack_base: usize,
}

impl Budget {
    fn new(limits: &JqLimits) -> Self {
        Self {
            steps: Cell::new(0),
            max_steps: limits.max_steps,
            deadline: Instant::now() + Duration::from_millis(limits.timeout_ms),
            stack_base: stack_position(),
        }
    }

    /// Counts a step; past a limit, unwinds the run. The payload is raised with
    /// `resume_unwind`, which skips the panic hook: an exhausted budget is an expected end,
    /// not a bug to report. Nothing is raised while already unwinding.
    fn tick(&self) {
        if std::thread::panicking() {
            return;
        }
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        let exhausted = if steps > self.max_steps {
            Some(Exhausted::Steps)
        } else if self.stack_base.abs_diff(stack_position()) > STACK_GUARD {
            Some(Exhausted::Stack)
        } else if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() >= self.deadline {
            Some(Exhausted::Time)
        } else {
            None
        };
        if let Some(exhausted) = exhausted {
            panic::resume_unwind(Box::new(exhausted));
        }
    }
}

/// Roughly where the stack pointer is: the address of a local of a frame never inlined.
#[inline(never)]
fn stack_position() -> usize {
    let marker = 0_u8;
    std::hint::black_box(std::ptr::addr_of!(marker)).addr()
}

/// jaq's natives, with `range` metered (it yields without cloning a context) and those that
/// reach outside the program replaced.
fn natives() -> impl Iterator<Item = Fun<Metered>> {
    let replaced = ["range", "env", "halt", "stderr_empty", "debug_empty"];
    let ours: [native::Filter<jaq_core::RunPtr<Metered>>; 5] = [
        ("range", native::v(3), metered_range),
        ("env", native::v(0), |_| refuse("env is not available")),
        ("halt", native::v(1), |_| refuse("halt is not available")),
        ("stderr_empty", native::v(0), |_| Box::new(std::iter::empty())),
        ("debug_empty", native::v(0), |_| Box::new(std::iter::empty())),
    ];
    jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .filter(move |(name, _, _)| !replaced.contains(name))
        .chain(ours.into_iter().map(native::run::<Metered>))
}

fn refuse<'a>(message: &'static str) -> ValXs<'a, Val> {
    Box::new(std::iter::once(Err(Exn::from(Error::str(message)))))
}

/// `range($from; $to; $by)` as jaq defines it, counting a step per number.
fn metered_range(mut cv: Cv<'_, Metered>) -> ValXs<'_, Val> {
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let budget = cv.0.data().budget;
    let zero = Val::from(0_isize);
    let (up, down) = (by > zero, by < zero);
    let mut next = Some(from);
    Box::new(std::iter::from_fn(move || {
        let x = next.take()?;
        let more = if up {
            x < to
        } else if down {
            x > to
        } else {
            x != to
        };
        if !more {
            return None;
        }
        budget.tick();
        match x.clone() + by.clone() {
            Ok(after) => next = Some(after),
            Err(error) => return Some(Err(Exn::from(error))),
        }
        Some(Ok(x))
    }))
}

// ---- output -------------------------------------------------------------------------------

/// Writes `value` as JSON of at most `max_bytes` and reads it back as a `serde_json::Value`.
/// The depth is checked first, without recursion, since writing and reading recurse.
fn to_json(value: &Val, max_bytes: usize) -> Result<Value, JqRunError> {
    if depth_exceeds(value, MAX_OUTPUT_DEPTH) {
        return Err(JqRunError::OutputTooDeep);
    }
    let mut out = Capped { bytes: Vec::new(), max: max_bytes };
    if jaq_json::write::write(&mut out, &jaq_json::write::Pp::default(), 0, value).is_err() {
        return Err(JqRunError::OutputTooLarge(max_bytes));
    }
    serde_json::from_slice(&out.bytes).map_err(|e| JqRunError::NotJson(truncated(e.to_string())))
}

fn depth_exceeds(value: &Val, max: usize) -> bool {
    let mut pending = vec![(value, 0_usize)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Val>> = match value {
            Val::Arr(items) => Box::new(items.iter()),
            Val::Obj(entries) => Box::new(entries.iter().flat_map(|(k, v)| [k, v])),
            _ => continue,
        };
        if depth >= max {
            return true;
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// A writer that fails once more than `max` bytes are written.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            return Err(io::Error::other("the output is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---- messages -----------------------------------------------------------------------------

/// The text of a raised error: a string as it is, anything else as JSON.
fn message_of(error: Error<Val>) -> String {
    let text = match error.into_val() {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        other => other.to_string(),
    };
    truncated(text)
}

fn truncated(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "it panicked".to_owned())
}

/// Where `part` (a slice of `whole`) starts, as a 1-based character position, if it is one.
fn position(whole: &str, part: &str) -> Option<usize> {
    let start = part.as_ptr().addr().checked_sub(whole.as_ptr().addr())?;
    (start <= whole.len()).then(|| whole.get(..start).map_or(start, |before| before.chars().count()) + 1)
}

fn at(whole: &str, part: &str) -> String {
    match position(whole, part) {
        Some(p) if part.is_empty() && p > whole.chars().count() => "at the end".to_owned(),
        Some(p) => format!("at character {p}"),
        None => "in the standard library".to_owned(),
    }
}

fn load_errors(source: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error as Load;
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Load::Io(failures) => {
                for (path, why) in failures {
                    messages.push(format!("cannot import {path:?}: {why}"));
                }
            }
            Load::Lex(failures) => {
                for (expected, found) in failures {
                    messages.push(format!("expected {} {}", expected.as_str(), at(source, found)));
                }
            }
            Load::Parse(failures) => {
                for (expected, found) in failures {
                    let got = if found.is_empty() { String::new() } else { format!(", found {found:?}") };
                    messages.push(format!("expected {}{got} {}", expected.as_str(), at(source, found)));
                }
            }
        }
    }
    joined(messages)
}

fn compile_errors(source: &str, errors: jaq_core::compile::Errors<&str, ()>) -> String {
    use jaq_core::compile::Undefined;
    let mut messages = Vec::new();
    for (_, failures) in errors {
        for (name, undefined) in failures {
            let what = match undefined {
                Undefined::Filter(arity) => format!("filter {name}/{arity}"),
                other => format!("{} {name}", other.as_str()),
            };
            messages.push(format!("undefined {what} {}", at(source, name)));
        }
    }
    joined(messages)
}

fn joined(messages: Vec<String>) -> String {
    if messages.is_empty() { "does not compile".to_owned() } else { truncated(messages.join("; ")) }
}

#[cfg(test)]
mod tests;
