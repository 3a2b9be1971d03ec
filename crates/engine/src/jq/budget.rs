//! The budget of the run on this thread: steps, time, stack, memory and the caller's interest.
//!
//! Each run has a thread of its own (`on_jq_thread`), so the budget lives in a thread-local
//! that `first_output` arms at the start of a run and disarms at its end. Values reach it
//! from operations that have no context to carry it (`FromIterator`, `Ord`, `+` …).
//!
//! Whatever exceeds the budget unwinds the run with an `Exhausted` payload, raised with
//! `resume_unwind` (which skips the panic hook: an exhausted budget is an expected end, not a
//! bug to report) and caught by `first_output`. Nothing is raised while already unwinding.

use std::cell::{Cell, RefCell};
use std::panic;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::JqLimits;

/// How much of the thread's stack a run may use before it is stopped as too deeply recursive.
const STACK_GUARD: usize = 8 << 20;
/// Units of work (a step, a byte allocated, an element compared …) between two readings of
/// the clock: a fraction of a millisecond of work.
const CLOCK_EVERY: u64 = 1 << 16;
/// The work a step counts for: the clock is read every 256 steps.
const STEP_WORK: u64 = CLOCK_EVERY / 256;

/// What ended a run early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exhausted {
    Steps,
    Time,
    Stack,
    Memory,
    Depth,
    Abandoned,
}

struct Budget {
    steps: Cell<u64>,
    max_steps: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    stack_base: Cell<Option<usize>>,
    memory: Cell<usize>,
    max_memory: Cell<usize>,
    /// Work done since the clock was last read.
    work: Cell<u64>,
    /// Set by the caller when it stops waiting for the thread's answer.
    abandoned: RefCell<Option<Arc<AtomicBool>>>,
}

thread_local! {
    static BUDGET: Budget = const {
        Budget {
            steps: Cell::new(0),
            max_steps: Cell::new(u64::MAX),
            deadline: Cell::new(None),
            stack_base: Cell::new(None),
            memory: Cell::new(0),
            max_memory: Cell::new(usize::MAX),
            work: Cell::new(0),
            abandoned: RefCell::new(None),
        }
    };
}

/// Arms the budget of a run starting now on this thread.
pub(super) fn begin(limits: &JqLimits) {
    BUDGET.with(|b| {
        b.steps.set(0);
        b.max_steps.set(limits.max_steps);
        b.deadline.set(Instant::now().checked_add(std::time::Duration::from_millis(limits.timeout_ms)));
        b.stack_base.set(Some(stack_position()));
        b.memory.set(0);
        b.max_memory.set(limits.max_memory_bytes);
        b.work.set(0);
    });
}

/// Disarms it: what runs on the thread afterwards is not limited.
pub(super) fn end() {
    BUDGET.with(|b| {
        b.max_steps.set(u64::MAX);
        b.deadline.set(None);
        b.stack_base.set(None);
        b.max_memory.set(usize::MAX);
    });
}

/// Makes every later run on this thread stop once `abandoned` is set.
pub(super) fn watch(abandoned: Arc<AtomicBool>) {
    BUDGET.with(|b| *b.abandoned.borrow_mut() = Some(abandoned));
}

/// Counts a step of the interpreter.
pub(super) fn step() {
    BUDGET.with(|b| {
        if std::thread::panicking() {
            return;
        }
        let steps = b.steps.get() + 1;
        b.steps.set(steps);
        if steps > b.max_steps.get() {
            exhausted(Exhausted::Steps);
        }
        if b.stack_base.get().is_some_and(|base| base.abs_diff(stack_position()) > STACK_GUARD) {
            exhausted(Exhausted::Stack);
        }
        b.add_work(STEP_WORK);
    });
}

/// Counts `units` of work done in one operation (elements visited, bytes scanned).
pub(super) fn work(units: u64) {
    BUDGET.with(|b| b.add_work(units));
}

/// Counts `bytes` about to be allocated for a value; past the budget, unwinds the run.
pub(super) fn charge(bytes: usize) {
    BUDGET.with(|b| {
        if std::thread::panicking() {
            return;
        }
        let memory = b.memory.get().saturating_add(bytes);
        b.memory.set(memory);
        if memory > b.max_memory.get() {
            exhausted(Exhausted::Memory);
        }
        b.add_work(u64::try_from(bytes).unwrap_or(u64::MAX));
    });
}

/// How many bytes the run may still allocate.
pub(super) fn remaining_memory() -> usize {
    BUDGET.with(|b| b.max_memory.get().saturating_sub(b.memory.get()))
}

/// Ends the run: a value would be nested deeper than any run may build.
pub(super) fn too_deep() -> ! {
    exhausted(Exhausted::Depth)
}

/// Ends the run: it needs more memory than its budget.
pub(super) fn out_of_memory() -> ! {
    exhausted(Exhausted::Memory)
}

impl Budget {
    fn add_work(&self, units: u64) {
        if std::thread::panicking() {
            return;
        }
        let work = self.work.get().saturating_add(units);
        if work < CLOCK_EVERY {
            self.work.set(work);
            return;
        }
        self.work.set(0);
        if self.abandoned.borrow().as_ref().is_some_and(|a| a.load(Ordering::Relaxed)) {
            exhausted(Exhausted::Abandoned);
        }
        if self.deadline.get().is_some_and(|deadline| Instant::now() >= deadline) {
            exhausted(Exhausted::Time);
        }
    }
}

fn exhausted(why: Exhausted) -> ! {
    panic::resume_unwind(Box::new(why))
}

/// Roughly where the stack pointer is: the address of a local of a frame never inlined.
#[inline(never)]
fn stack_position() -> usize {
    let marker = 0_u8;
    std::hint::black_box(std::ptr::addr_of!(marker)).addr()
}
