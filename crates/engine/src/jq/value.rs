//! `Bounded`: the values programs run on. A jaq JSON value with an upper bound of how deeply
//! it is nested, so that no operation can build a value deeper than `MAX_VALUE_DEPTH` (every
//! recursive walk of a value — writing, comparing, dropping — then fits the jq thread's
//! stack), and whose every operation that allocates charges the run's memory budget first.
//!
//! The bound of a child is its parent's minus one; a built array or object is one deeper than
//! the deepest of its parts. Operations that cannot fail in jaq's traits (`FromIterator`,
//! `into_string`) end the run through the budget instead (`budget::too_deep`, `charge`).
//!
//! Indexing, slicing, updates and conversions delegate to `jaq_json::Val` once their cost is
//! known; comparisons and arithmetic are in `ops`, where they are metered.

use std::cell::{Cell, RefCell};

use jaq_core::path::Opt;
use jaq_core::val::Range;
use jaq_core::{Error, Exn, ValR, ValX};
use jaq_json::{Map, Rc, Val};

use super::budget;
use super::messages::{lift_error, lift_exn};

/// How deeply any value a run builds may be nested: far more than a payload has (at most 128
/// levels), and little enough that walking it recursively takes a few megabytes of stack.
pub const MAX_VALUE_DEPTH: u32 = 512;

/// What an element of an array costs.
pub(super) const ELEMENT: usize = size_of::<Val>();
/// What an entry of an object costs: its key, its value and its slot in the index.
pub(super) const ENTRY: usize = 3 * ELEMENT;
/// What a string costs beyond its bytes: the box holding its handle.
pub(super) const STRING: usize = 32;

/// A value of a run; see the module documentation.
#[derive(Clone, Debug)]
pub struct Bounded {
    val: Val,
    depth: u32,
}

impl Bounded {
    /// A value with nothing nested in it (null, a boolean, a number, a string).
    pub(super) fn scalar(val: Val) -> Self {
        Self { val, depth: 0 }
    }

    /// A value nested at most `depth` levels; deeper than a run may build ends the run.
    pub(super) fn nested(val: Val, depth: u32) -> Self {
        if depth > MAX_VALUE_DEPTH {
            budget::too_deep();
        }
        Self { val, depth }
    }

    /// A value taken out of `self`.
    fn child(&self, val: Val) -> Self {
        Self { val, depth: self.depth.saturating_sub(1) }
    }

    /// A new UTF-8 string, charged to the run.
    pub(super) fn text(bytes: impl AsRef<[u8]> + Send + 'static) -> Self {
        budget::charge(bytes.as_ref().len().saturating_add(STRING));
        Self::scalar(<Val as jaq_std::ValT>::from_utf8_bytes(bytes))
    }

    pub(super) fn val(&self) -> &Val {
        &self.val
    }

    pub(super) fn depth(&self) -> u32 {
        self.depth
    }

    pub(super) fn into_val(self) -> Val {
        self.val
    }

    /// An array of `items`, charged to the run as it is collected.
    fn array(items: impl IntoIterator<Item = Self>) -> Self {
        let mut deepest = 0;
        let items: Vec<Val> = items
            .into_iter()
            .map(|item| {
                budget::charge(ELEMENT);
                deepest = deepest.max(item.depth);
                if deepest >= MAX_VALUE_DEPTH {
                    budget::too_deep();
                }
                item.val
            })
            .collect();
        Self::nested(Val::Arr(Rc::new(items)), deepest + 1)
    }
}

/// Object keys are hashed whole; an array or object as key would make hashing as costly as
/// the key is large (and it can be large by sharing), so keys are scalars, as in jq.
pub(super) fn check_key(key: &Bounded) -> Result<(), Error<Bounded>> {
    match key.val {
        Val::Arr(_) | Val::Obj(_) => Err(Error::typ(key.clone(), "object key")),
        _ => Ok(()),
    }
}

/// How many bytes a copy of `rc`'s contents costs if `Rc::make_mut` has to make one.
fn copy_cost<T>(rc: &Rc<T>, len: usize, each: usize) -> usize {
    if Rc::strong_count(rc) > 1 { len.saturating_mul(each) } else { 0 }
}

impl From<bool> for Bounded {
    fn from(b: bool) -> Self {
        Self::scalar(Val::from(b))
    }
}

impl From<isize> for Bounded {
    fn from(i: isize) -> Self {
        Self::scalar(Val::from(i))
    }
}

impl From<usize> for Bounded {
    fn from(i: usize) -> Self {
        Self::scalar(Val::from(i))
    }
}

impl From<f64> for Bounded {
    fn from(f: f64) -> Self {
        Self::scalar(Val::from(f))
    }
}

impl From<String> for Bounded {
    fn from(s: String) -> Self {
        Self::text(s)
    }
}

impl From<Range<Bounded>> for Bounded {
    fn from(range: Range<Bounded>) -> Self {
        let mut deepest = 0;
        let mut map = Map::default();
        for (key, value) in [("start", range.start), ("end", range.end)] {
            if let Some(value) = value {
                budget::charge(ENTRY);
                deepest = deepest.max(value.depth);
                map.insert(Val::utf8_str(key), value.val);
            }
        }
        Self::nested(Val::obj(map), deepest + 1)
    }
}

impl FromIterator<Bounded> for Bounded {
    fn from_iter<T: IntoIterator<Item = Bounded>>(items: T) -> Self {
        Self::array(items)
    }
}

/// An object of `entries`, charged to the run as it is built.
fn object(entries: impl IntoIterator<Item = (Bounded, Bounded)>) -> ValR<Bounded> {
    let mut deepest = 0;
    let mut map = Map::default();
    for (key, value) in entries {
        check_key(&key)?;
        budget::charge(ENTRY);
        deepest = deepest.max(key.depth).max(value.depth);
        map.insert(key.val, value.val);
    }
    Ok(Bounded::nested(Val::obj(map), deepest + 1))
}

/// The outputs of the function of an update (`.[] |= f` …), adapted to `jaq_json::Val`'s
/// update methods: the first exception is kept aside (its type cannot become `Val`'s) and
/// ends the update, and the deepest output is remembered to bound the result.
struct Outputs<'a> {
    exception: RefCell<Option<Exn<'a, Bounded>>>,
    deepest: Cell<u32>,
}

impl<'a> Outputs<'a> {
    fn new() -> Self {
        Self { exception: RefCell::new(None), deepest: Cell::new(0) }
    }

    fn of<'s, I>(
        &'s self,
        f: &'s impl Fn(Bounded) -> I,
        input: Bounded,
    ) -> impl Iterator<Item = ValX<'a, Val>> + 's
    where
        I: Iterator<Item = ValX<'a, Bounded>> + 's,
    {
        let outputs = self.exception.borrow().is_none().then(|| f(input));
        outputs.into_iter().flatten().map_while(move |output| match output {
            Ok(value) => {
                self.deepest.set(self.deepest.get().max(value.depth));
                Some(Ok(value.val))
            }
            Err(exception) => {
                self.exception.borrow_mut().get_or_insert(exception);
                None
            }
        })
    }

    /// The updated value, nested at most `depth(deepest output)` levels.
    fn finish(self, updated: ValX<'a, Val>, depth: impl FnOnce(u32) -> u32) -> ValX<'a, Bounded> {
        if let Some(exception) = self.exception.into_inner() {
            return Err(exception);
        }
        let updated = updated.map_err(lift_exn)?;
        Ok(Bounded::nested(updated, depth(self.deepest.get())))
    }
}

impl jaq_core::ValT for Bounded {
    fn from_num(n: &str) -> ValR<Self> {
        Val::from_num(n).map(Self::scalar).map_err(lift_error)
    }

    fn from_map<I: IntoIterator<Item = (Self, Self)>>(entries: I) -> ValR<Self> {
        object(entries)
    }

    fn key_values(self) -> Box<dyn Iterator<Item = ValR<(Self, Self), Self>>> {
        let depth = self.depth.saturating_sub(1);
        let child = move |val| Self { val, depth };
        match &self.val {
            Val::Arr(items) => {
                let items = items.clone();
                Box::new((0..items.len()).map(move |i| {
                    budget::work(1);
                    Ok((Self::from(i), child(items[i].clone())))
                }))
            }
            Val::Obj(entries) => {
                let entries = entries.clone();
                Box::new((0..entries.len()).filter_map(move |i| {
                    budget::work(1);
                    let (k, v) = entries.get_index(i)?;
                    Some(Ok((child(k.clone()), child(v.clone()))))
                }))
            }
            _ => Box::new(std::iter::once(Err(Error::typ(self, "iterable (array or object)")))),
        }
    }

    fn values(self) -> Box<dyn Iterator<Item = ValR<Self>>> {
        Box::new(self.key_values().map(|kv| kv.map(|(_, v)| v)))
    }

    fn index(self, index: &Self) -> ValR<Self> {
        budget::work(1);
        let depth = match (&self.val, &index.val) {
            (Val::Obj(_), _) => {
                check_key(index).map_err(|_| Error::index(self.clone(), index.clone()))?;
                self.depth.saturating_sub(1)
            }
            (Val::Arr(items), Val::Arr(part)) if !part.is_empty() => {
                let at = super::ops::positions_of_run(items, part);
                return Ok(Self::array(at.into_iter().map(Self::from)));
            }
            (Val::Arr(_), Val::Arr(_)) => 1,
            (Val::Arr(items), Val::Obj(_)) => {
                budget::charge(items.len().saturating_mul(ELEMENT));
                self.depth
            }
            _ => self.depth.saturating_sub(1),
        };
        let val = self.val.index(&index.val).map_err(lift_error)?;
        Ok(Self { val, depth })
    }

    fn range(self, range: Range<&Self>) -> ValR<Self> {
        if let Val::Arr(items) = &self.val {
            budget::charge(items.len().saturating_mul(ELEMENT));
        }
        let depth = self.depth;
        let range = range.start.map(|b| &b.val)..range.end.map(|b| &b.val);
        let val = self.val.range(range).map_err(lift_error)?;
        Ok(Self { val, depth })
    }

    fn map_values<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        match &self.val {
            Val::Arr(items) => budget::charge(items.len().saturating_mul(ELEMENT)),
            Val::Obj(entries) => budget::charge(entries.len().saturating_mul(ENTRY)),
            _ => {}
        }
        let (depth, child) = (self.depth, self.depth.saturating_sub(1));
        let outputs = Outputs::new();
        let updated = self.val.map_values(opt, |val| outputs.of(&f, Self { val, depth: child }));
        outputs.finish(updated, |deepest| depth.max(deepest + 1))
    }

    fn map_index<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        index: &Self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        match (&self.val, &index.val) {
            (Val::BStr(_) | Val::TStr(_) | Val::Arr(_), Val::Obj(bounds)) => {
                let start = bounds.get(&Val::utf8_str("start")).cloned().map(Self::scalar);
                let end = bounds.get(&Val::utf8_str("end")).cloned().map(Self::scalar);
                return self.map_range(start.as_ref()..end.as_ref(), opt, f);
            }
            (Val::Obj(entries), _) => {
                check_key(index)?;
                budget::charge(copy_cost(entries, entries.len(), ENTRY).saturating_add(ENTRY));
            }
            (Val::Arr(items), _) => budget::charge(copy_cost(items, items.len(), ELEMENT)),
            _ => {}
        }
        let (depth, child) = (self.depth, self.depth.saturating_sub(1));
        let outputs = Outputs::new();
        let updated = self.val.map_index(&index.val, opt, |val| outputs.of(&f, Self { val, depth: child }));
        outputs.finish(updated, |deepest| depth.max(deepest + 1))
    }

    fn map_range<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        range: Range<&Self>,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        match &self.val {
            // The slice handed to `f`, and the array spliced afterwards.
            Val::Arr(items) => budget::charge(items.len().saturating_mul(2 * ELEMENT)),
            Val::BStr(bytes) | Val::TStr(bytes) => budget::charge(bytes.len().saturating_add(STRING)),
            _ => {}
        }
        let depth = self.depth;
        let range = range.start.map(|b| &b.val)..range.end.map(|b| &b.val);
        let outputs = Outputs::new();
        let updated = self.val.map_range(range, opt, |val| outputs.of(&f, Self { val, depth }));
        // The output replaces a part of `self`: its elements become `self`'s.
        outputs.finish(updated, |deepest| depth.max(deepest))
    }

    fn as_bool(&self) -> bool {
        self.val.as_bool()
    }

    fn into_string(self) -> Self {
        match self.val {
            Val::TStr(_) => self,
            Val::BStr(bytes) => Self::scalar(Val::TStr(bytes)),
            _ => Self::text(super::json::write_charged(&self)),
        }
    }
}

impl jaq_std::ValT for Bounded {
    fn into_seq<S: FromIterator<Self>>(self) -> Result<S, Self> {
        match &self.val {
            Val::Arr(items) => {
                budget::charge(items.len().saturating_mul(size_of::<Self>()));
                let items = items.clone();
                Ok(items.iter().map(|item| self.child(item.clone())).collect())
            }
            _ => Err(self),
        }
    }

    fn is_int(&self) -> bool {
        self.val.is_int()
    }

    fn as_isize(&self) -> Option<isize> {
        self.val.as_isize()
    }

    fn as_f64(&self) -> Option<f64> {
        self.val.as_f64()
    }

    fn is_utf8_str(&self) -> bool {
        self.val.is_utf8_str()
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        self.val.as_bytes()
    }

    fn as_sub_str(&self, sub: &[u8]) -> Self {
        Self::scalar(self.val.as_sub_str(sub))
    }

    fn from_utf8_bytes(bytes: impl AsRef<[u8]> + Send + 'static) -> Self {
        Self::text(bytes)
    }
}

impl std::fmt::Display for Bounded {
    /// At most a few hundred characters: this shows values in error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::messages::shown(&self.val))
    }
}
