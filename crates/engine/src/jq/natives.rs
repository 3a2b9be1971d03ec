//! The natives programs can call: jaq's core and standard ones (generic over the value type,
//! so they build `Bounded` values through its metered operations), jaq-json's re-provided for
//! `Bounded` with their cost metered, and those that would reach outside the program replaced.

use jaq_core::native::{self, Fun, bome, unary};
use jaq_core::{Cv, Error, Exn, RunPtr, ValR, ValXs};
use jaq_json::{Num, Val};

use super::value::{Bounded, ELEMENT, check_key};
use super::{Metered, budget, json, ops, regex};

/// Every native of a program.
pub(super) fn all() -> impl Iterator<Item = Fun<Metered>> {
    let replaced = ["range", "env", "halt", "stderr_empty", "debug_empty"];
    jaq_core::funs()
        .chain(jaq_std::funs())
        .filter(move |(name, _, _)| !replaced.contains(name))
        .chain(ours().into_iter().chain([regex::native()]).map(native::run::<Metered>))
}

fn ours() -> [native::Filter<RunPtr<Metered>>; 13] {
    [
        ("range", native::v(3), metered_range),
        ("env", native::v(0), |_| refuse("env is not available")),
        ("halt", native::v(1), |_| refuse("halt is not available")),
        ("stderr_empty", native::v(0), |_| Box::new(std::iter::empty())),
        ("debug_empty", native::v(0), |_| Box::new(std::iter::empty())),
        ("fromjson", native::v(0), fromjson),
        ("tojson", native::v(0), |cv| bome(Ok(Bounded::text(json::write_charged(&cv.1))))),
        ("tobytes", native::v(0), |cv| bome(to_bytes(&cv.1))),
        ("length", native::v(0), |cv| bome(length(cv.1))),
        ("contains", native::v(1), |cv| unary(cv, |x, y| Ok(Bounded::from(contains(x.val(), y.val()))))),
        ("has", native::v(1), |cv| unary(cv, has)),
        ("indices", native::v(1), |cv| unary(cv, indices)),
        ("bsearch", native::v(1), |cv| unary(cv, bsearch)),
    ]
}

fn refuse<'a>(message: &'static str) -> ValXs<'a, Bounded> {
    Box::new(std::iter::once(Err(Exn::from(Error::str(message)))))
}

/// `range($from; $to; $by)` as jaq defines it, counting a step per number (it yields without
/// cloning a context).
fn metered_range(mut cv: Cv<'_, Metered>) -> ValXs<'_, Bounded> {
    let by = cv.0.pop_var();
    let to = cv.0.pop_var();
    let from = cv.0.pop_var();
    let zero = Bounded::from(0_isize);
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
        budget::step();
        match x.clone() + by.clone() {
            Ok(after) => next = Some(after),
            Err(error) => return Some(Err(Exn::from(error))),
        }
        Some(Ok(x))
    }))
}

fn fromjson(cv: Cv<'_, Metered>) -> ValXs<'_, Bounded> {
    let text = match cv.1.val() {
        Val::TStr(text) => text,
        _ => return bome(Err(Error::typ(cv.1, "string"))),
    };
    let fail = |why: String| Exn::from(Error::str(format_args!("cannot parse {} as JSON: {why}", cv.1)));
    match json::parse(text) {
        Ok(values) => {
            Box::new(values.into_iter().map(|parsed| parsed.map_err(fail)).collect::<Vec<_>>().into_iter())
        }
        Err(why) => Box::new(std::iter::once(Err(fail(why)))),
    }
}

/// jaq-json's `tobytes`: a string's bytes, a byte (0 to 255), or an array of those joined.
fn to_bytes(value: &Bounded) -> ValR<Bounded> {
    fn append(value: &Val, out: &mut Vec<u8>) -> bool {
        match value {
            Val::BStr(bytes) | Val::TStr(bytes) => {
                budget::charge(bytes.len());
                out.extend_from_slice(bytes);
                true
            }
            Val::Num(_) => match <Val as jaq_std::ValT>::as_isize(value).map(u8::try_from) {
                Some(Ok(byte)) => {
                    budget::charge(1);
                    out.push(byte);
                    true
                }
                _ => false,
            },
            Val::Arr(items) => items.iter().all(|item| append(item, out)),
            _ => false,
        }
    }
    let mut out = Vec::new();
    if !append(value.val(), &mut out) {
        return Err(Error::str(format_args!("cannot convert {value} to bytes")));
    }
    Ok(Bounded::scalar(Val::byte_str(out)))
}

fn length(value: Bounded) -> ValR<Bounded> {
    let n = match value.val() {
        Val::Null => 0,
        Val::Bool(_) => return Err(Error::str(format_args!("{value} has no length"))),
        Val::Num(Num::Float(f)) => return Ok(Bounded::from(f.abs())),
        Val::Num(_) => return if value < Bounded::from(0_isize) { -value } else { Ok(value) },
        Val::TStr(text) => {
            budget::work(u64::try_from(text.len()).unwrap_or(u64::MAX));
            bstr::ByteSlice::chars(&***text).count()
        }
        Val::BStr(bytes) => bytes.len(),
        Val::Arr(items) => items.len(),
        Val::Obj(entries) => entries.len(),
    };
    Ok(Bounded::from(n))
}

/// jaq-json's `contains`: substrings, elements contained in some element, entries contained
/// in the entry of the same key, or equal values.
fn contains(whole: &Val, part: &Val) -> bool {
    budget::work(1);
    match (whole, part) {
        (Val::BStr(l), Val::BStr(r)) | (Val::TStr(l), Val::TStr(r)) => {
            budget::work(u64::try_from(l.len()).unwrap_or(u64::MAX));
            bstr::ByteSlice::contains_str(&***l, &***r)
        }
        (Val::Arr(l), Val::Arr(r)) => r.iter().all(|r| l.iter().any(|l| contains(l, r))),
        (Val::Obj(l), Val::Obj(r)) => r.iter().all(|(k, r)| l.get(k).is_some_and(|l| contains(l, r))),
        _ => ops::equal(whole, part),
    }
}

/// Whether `key` indexes something in `value`; keys of other types than the value's are an
/// error, as in jq.
fn has(value: Bounded, key: Bounded) -> ValR<Bounded> {
    let found = match (value.val(), key.val()) {
        (Val::Obj(entries), _) => {
            check_key(&key)?;
            entries.contains_key(key.val())
        }
        (Val::Arr(_) | Val::BStr(_), Val::Num(_)) => {
            let len = match value.val() {
                Val::Arr(items) => items.len(),
                Val::BStr(bytes) => bytes.len(),
                _ => 0,
            };
            let index = <Val as jaq_std::ValT>::as_isize(key.val());
            index.is_some_and(|i| if i < 0 { i.unsigned_abs() <= len } else { i.unsigned_abs() < len })
        }
        (Val::Null, _) => false,
        _ => return Err(Error::index(value, key)),
    };
    Ok(Bounded::from(found))
}

/// jaq-json's `indices`: where `part` occurs in a string (character positions), in a byte
/// string, as a run in an array, or as an element of an array.
fn indices(whole: Bounded, part: Bounded) -> ValR<Bounded> {
    let at: Vec<usize> = match (whole.val(), part.val()) {
        (Val::TStr(_), Val::TStr(y)) | (Val::BStr(_), Val::BStr(y)) if y.is_empty() => Vec::new(),
        (Val::TStr(x), Val::TStr(y)) => {
            let cost = window_cost(y.len());
            let starts = bstr::ByteSlice::char_indices(&***x).map(|(start, _, _)| start).enumerate();
            let found = starts.filter(|(_, start)| {
                budget::work(cost);
                x[*start..].starts_with(y)
            });
            found.map(|(i, _)| i).collect()
        }
        (Val::BStr(x), Val::BStr(y)) => {
            let cost = window_cost(y.len());
            let found = x.windows(y.len()).enumerate().filter(|(_, window)| {
                budget::work(cost);
                *window == &***y
            });
            found.map(|(i, _)| i).collect()
        }
        (Val::Arr(x), Val::Arr(y)) => ops::positions_of_run(x, y),
        (Val::Arr(x), y) => x.iter().enumerate().filter(|(_, x)| ops::equal(x, y)).map(|e| e.0).collect(),
        _ => return Err(Error::index(whole, part)),
    };
    budget::charge(at.len().saturating_mul(ELEMENT));
    Ok(at.into_iter().map(Bounded::from).collect())
}

/// The work of comparing a window of `len` bytes.
fn window_cost(len: usize) -> u64 {
    1 + u64::try_from(len / 64).unwrap_or(u64::MAX)
}

/// jaq-json's `bsearch`: the index of `x` in a sorted array, or `-1 - ` where it would go.
fn bsearch(array: Bounded, x: Bounded) -> ValR<Bounded> {
    let Val::Arr(items) = array.val() else {
        return Err(Error::typ(array, "array"));
    };
    let at = match items.binary_search_by(|item| ops::compare(item, x.val())) {
        Ok(i) => isize::try_from(i).unwrap_or(isize::MAX),
        Err(i) => -1 - isize::try_from(i).unwrap_or(isize::MAX - 1),
    };
    Ok(Bounded::from(at))
}
