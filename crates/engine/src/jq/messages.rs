//! The text of errors: raised by a run, or found compiling a program.
//!
//! A value shown in a message is cut short while it is written (`shown`), so that an error
//! about a huge or deep value costs no more than its message.

use std::fmt::{self, Write as _};

use jaq_core::{Error, Exn};
use jaq_json::Val;

use super::value::Bounded;

/// The longest error message kept from a failed run.
pub(super) const MAX_MESSAGE: usize = 1_024;
/// The most of one value an error message shows.
const MAX_SHOWN: usize = 256;

/// A writer that takes the first `room` bytes and fails past them, which stops whatever
/// writes into it.
struct Clipped {
    text: String,
    room: usize,
    clipped: bool,
}

impl Clipped {
    fn new(room: usize) -> Self {
        Self { text: String::new(), room, clipped: false }
    }

    fn finish(mut self) -> String {
        if self.clipped {
            self.text.push('…');
        }
        self.text
    }
}

impl fmt::Write for Clipped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let left = self.room - self.text.len();
        if s.len() <= left {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.clipped = true;
        Err(fmt::Error)
    }
}

fn clipped(room: usize, what: &dyn fmt::Display) -> String {
    let mut out = Clipped::new(room);
    // An error here is the writer being full: what it took is the point.
    let _ = write!(out, "{what}");
    out.finish()
}

/// `value` as jaq writes it, at most `MAX_SHOWN` bytes of it.
pub(super) fn shown(value: &Val) -> String {
    clipped(MAX_SHOWN, value)
}

/// An error of an operation on inner values, as an error of the run: its text, shortened.
pub(super) fn lift_error(error: Error<Val>) -> Error<Bounded> {
    let text = clipped(MAX_MESSAGE, &error);
    // `Error::str` displays as a JSON string; the run's errors show its text.
    let text = serde_json::from_str::<String>(&text).unwrap_or(text);
    Error::str(text)
}

pub(super) fn lift_exn<'a>(exception: Exn<'a, Val>) -> Exn<'a, Bounded> {
    match exception.get_err() {
        Ok(error) => Exn::from(lift_error(error)),
        // Operations on values raise errors only.
        Err(_) => Exn::from(Error::str("an operation on a value failed")),
    }
}

/// The text of a raised error: a string as it is, anything else as JSON.
pub(super) fn message_of(error: Error<Bounded>) -> String {
    let value = error.into_val();
    let text = match value.val() {
        Val::TStr(bytes) | Val::BStr(bytes) => {
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE + 4)]).into_owned()
        }
        _ => clipped(MAX_MESSAGE, &value),
    };
    truncated(text)
}

pub(super) fn truncated(mut text: String) -> String {
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

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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

pub(super) fn load_errors(source: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
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

pub(super) fn compile_errors(source: &str, errors: jaq_core::compile::Errors<&str, ()>) -> String {
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
