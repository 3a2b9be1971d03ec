//! Comparing and calculating with `Bounded` values, metered.
//!
//! Comparisons walk both values themselves (with jaq's order and equality), counting each
//! element visited as work: arrays sharing their parts can stand for far more elements than
//! their memory holds, and a comparison of those must still stop at the time limit. What an
//! arithmetic operation allocates is charged before it is done, integers are kept to
//! `MAX_INT_BITS`, and errors show the operands as `Bounded` (shortened) values.

use std::cmp::Ordering;
use std::ops::{Add, Div, Mul, Neg, Rem, Sub};

use bstr::ByteSlice;
use jaq_core::ops::Math;
use jaq_core::{Error, ValR};
use jaq_json::{Map, Num, Rc, Val};

use super::budget;
use super::messages::lift_error;
use super::value::{Bounded, ELEMENT, ENTRY, STRING};

/// The largest integer a run may compute, in bits: beyond it, multiplying takes long enough
/// to matter (jq itself has 53-bit integers).
pub const MAX_INT_BITS: u64 = 16_384;

/// jaq's order of values (`Val::cmp`), visiting arrays and objects here so that each element
/// counts.
pub(super) fn compare(a: &Val, b: &Val) -> Ordering {
    budget::work(1);
    match (a, b) {
        (Val::Arr(x), Val::Arr(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ordering::Equal;
            }
            lexicographic(x.iter(), y.iter())
        }
        (Val::Obj(x), Val::Obj(y)) => {
            if Rc::ptr_eq(x, y) {
                return Ordering::Equal;
            }
            match (x.is_empty(), y.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => {
                    let (x, y) = (sorted_by_key(x), sorted_by_key(y));
                    lexicographic(x.iter().map(|e| e.0), y.iter().map(|e| e.0))
                        .then_with(|| lexicographic(x.iter().map(|e| e.1), y.iter().map(|e| e.1)))
                }
            }
        }
        // Scalars, or values of different types: nothing nested is visited.
        _ => a.cmp(b),
    }
}

/// jaq's equality of values (`Val::eq`), metered like `compare`.
pub(super) fn equal(a: &Val, b: &Val) -> bool {
    budget::work(1);
    match (a, b) {
        (Val::Arr(x), Val::Arr(y)) => {
            Rc::ptr_eq(x, y) || (x.len() == y.len() && x.iter().zip(y.iter()).all(|(l, r)| equal(l, r)))
        }
        (Val::Obj(x), Val::Obj(y)) => {
            Rc::ptr_eq(x, y)
                || (x.len() == y.len() && x.iter().all(|(k, l)| y.get(k).is_some_and(|r| equal(l, r))))
        }
        _ => a == b,
    }
}

fn lexicographic<'v>(x: impl Iterator<Item = &'v Val>, mut y: impl Iterator<Item = &'v Val>) -> Ordering {
    for l in x {
        let Some(r) = y.next() else {
            return Ordering::Greater;
        };
        match compare(l, r) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    if y.next().is_some() { Ordering::Less } else { Ordering::Equal }
}

fn sorted_by_key(map: &Map) -> Vec<(&Val, &Val)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|(k1, _), (k2, _)| compare(k1, k2));
    entries
}

/// Where `part` occurs as a run of consecutive elements of `items`.
pub(super) fn positions_of_run(items: &[Val], part: &[Val]) -> Vec<usize> {
    if part.is_empty() {
        return Vec::new();
    }
    let mut at = Vec::new();
    for (i, window) in items.windows(part.len()).enumerate() {
        if window.iter().zip(part).all(|(l, r)| equal(l, r)) {
            budget::charge(ELEMENT);
            at.push(i);
        }
    }
    at
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        equal(self.val(), other.val())
    }
}

impl Eq for Bounded {}

impl PartialOrd for Bounded {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bounded {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.val(), other.val())
    }
}

/// How many bits an integer takes (none for other numbers: they do not grow).
fn int_bits(n: &Num) -> u64 {
    match n {
        Num::Int(_) => isize::BITS.into(),
        Num::BigInt(i) => i.bits(),
        _ => 0,
    }
}

fn within_int_bits(bits: u64) -> Result<(), Error<Bounded>> {
    if bits > MAX_INT_BITS {
        return Err(Error::str(format_args!("cannot compute an integer of more than {MAX_INT_BITS} bits")));
    }
    Ok(())
}

/// Bytes that `Rc::make_mut` copies when the left operand is shared.
fn copied<T>(rc: &Rc<T>, len: usize, each: usize) -> usize {
    if Rc::strong_count(rc) > 1 { len.saturating_mul(each) } else { 0 }
}

/// `l op r` on the inner values, whose cost has been charged; the result nested at most
/// `depth` levels.
fn delegate(result: jaq_json::ValR, depth: u32) -> ValR<Bounded> {
    result.map(|val| Bounded::nested(val, depth)).map_err(lift_error)
}

impl Add for Bounded {
    type Output = ValR<Self>;

    fn add(self, rhs: Self) -> ValR<Self> {
        let depth = self.depth().max(rhs.depth());
        match (self.val(), rhs.val()) {
            (Val::Null, _) => return Ok(rhs),
            (_, Val::Null) => return Ok(self),
            (Val::Num(x), Val::Num(y)) => within_int_bits(int_bits(x).max(int_bits(y)) + 1)?,
            (Val::TStr(l), Val::TStr(r)) | (Val::BStr(l), Val::BStr(r)) => {
                let copied = if l.is_unique() { 0 } else { l.len() };
                budget::charge(copied.saturating_add(r.len()).saturating_add(STRING));
            }
            (Val::Arr(l), Val::Arr(r)) => {
                budget::charge(copied(l, l.len(), ELEMENT).saturating_add(r.len().saturating_mul(ELEMENT)));
            }
            (Val::Obj(l), Val::Obj(r)) => {
                budget::charge(copied(l, l.len(), ENTRY).saturating_add(r.len().saturating_mul(ENTRY)));
            }
            _ => return Err(Error::math(self, Math::Add, rhs)),
        }
        delegate(self.into_val() + rhs.into_val(), depth)
    }
}

impl Sub for Bounded {
    type Output = ValR<Self>;

    fn sub(self, rhs: Self) -> ValR<Self> {
        match (self.val(), rhs.val()) {
            (Val::Num(x), Val::Num(y)) => {
                within_int_bits(int_bits(x).max(int_bits(y)) + 1)?;
                delegate(self.into_val() - rhs.into_val(), 0)
            }
            (Val::Arr(l), Val::Arr(r)) => {
                budget::charge(l.len().saturating_add(r.len()).saturating_mul(ELEMENT));
                let mut removed: Vec<&Val> = r.iter().collect();
                removed.sort_by(|a, b| compare(a, b));
                let kept = l.iter().filter(|x| removed.binary_search_by(|r| compare(r, x)).is_err());
                let kept: Vec<Val> = kept.cloned().collect();
                Ok(Bounded::nested(Val::Arr(Rc::new(kept)), self.depth()))
            }
            _ => Err(Error::math(self, Math::Sub, rhs)),
        }
    }
}

impl Mul for Bounded {
    type Output = ValR<Self>;

    fn mul(self, rhs: Self) -> ValR<Self> {
        let depth = self.depth().max(rhs.depth());
        match (self.val(), rhs.val()) {
            (Val::Num(x), Val::Num(y)) => within_int_bits(int_bits(x) + int_bits(y))?,
            (Val::BStr(s) | Val::TStr(s), Val::Num(n)) | (Val::Num(n), Val::BStr(s) | Val::TStr(s)) => {
                budget::charge(repeated_len(s.len(), n).saturating_add(STRING));
            }
            (Val::Obj(l), Val::Obj(r)) => {
                budget::charge(copied(l, l.len(), ENTRY).saturating_add(r.len().saturating_mul(ENTRY)));
            }
            _ => return Err(Error::math(self, Math::Mul, rhs)),
        }
        delegate(self.into_val() * rhs.into_val(), depth)
    }
}

/// How long a string of `len` bytes repeated `times` is (jaq repeats by a positive integer,
/// large ones saturated, and answers null otherwise).
fn repeated_len(len: usize, times: &Num) -> usize {
    let times = match times {
        Num::Int(i) => usize::try_from(*i).unwrap_or(0),
        Num::BigInt(i) if i.bits() > 0 && !is_negative(times) => usize::MAX,
        _ => 0,
    };
    len.saturating_mul(times)
}

fn is_negative(n: &Num) -> bool {
    Val::Num(n.clone()) < Val::from(0_isize)
}

impl Div for Bounded {
    type Output = ValR<Self>;

    fn div(self, rhs: Self) -> ValR<Self> {
        match (self.val(), rhs.val()) {
            (Val::Num(_), Val::Num(_)) => delegate(self.into_val() / rhs.into_val(), 0),
            (Val::TStr(x), Val::TStr(y)) | (Val::BStr(x), Val::BStr(y)) => {
                budget::work(u64::try_from(x.len()).unwrap_or(u64::MAX));
                let parts = if y.is_empty() { x.chars().count() } else { x.find_iter(&***y).count() + 1 };
                budget::charge(parts.saturating_mul(ELEMENT + STRING));
                delegate(self.into_val() / rhs.into_val(), 1)
            }
            _ => Err(Error::math(self, Math::Div, rhs)),
        }
    }
}

impl Rem for Bounded {
    type Output = ValR<Self>;

    fn rem(self, rhs: Self) -> ValR<Self> {
        match (self.val(), rhs.val()) {
            (Val::Num(_), Val::Num(_)) => delegate(self.into_val() % rhs.into_val(), 0),
            _ => Err(Error::math(self, Math::Rem, rhs)),
        }
    }
}

impl Neg for Bounded {
    type Output = ValR<Self>;

    fn neg(self) -> ValR<Self> {
        match self.val() {
            Val::Num(_) => delegate(-self.into_val(), 0),
            _ => Err(Error::typ(self, "number")),
        }
    }
}
