//! Regular expressions, metered. jaq-std's natives (`matches`, `split_matches`, `split_`)
//! collect every match of a string before any value is built from them; a string of a
//! million matches would allocate far past the budget in that one step. So each call is
//! preceded by `charge_regex`, which counts the matches first (charging what jaq-std will
//! hold for each, so counting itself stops at the budget), through definitions that take
//! the natives' names; the natives themselves stay reachable only through them.

use jaq_core::load::{self, parse::Def};
use jaq_core::native::{self, Filter};
use jaq_core::{Cv, RunPtr, ValXs};
use jaq_json::Val;
use regex_bites::bytes::{Regex, RegexBuilder};

use super::value::ELEMENT;
use super::{Metered, budget};

/// What jaq-std holds for one match besides its groups: the part of the result it is in.
const PART_BYTES: usize = 2 * ELEMENT;
/// What jaq-std holds for each group of a match: offset, length, text and name.
const GROUP_BYTES: usize = 3 * ELEMENT;

/// Definitions read before jaq-std's: each guarded native, called through `charge_regex`.
/// jaq resolves a name to the latest definition before the call, else to a native, so
/// jaq-std's definitions (`test`, `match`, `sub` …) call these.
pub(super) fn guard_defs() -> impl Iterator<Item = Def<&'static str>> {
    parsed(
        "def unmetered_matches(re; flags): matches(re; flags);
         def unmetered_split_matches(re; flags): split_matches(re; flags);
         def unmetered_split_(re; flags): split_(re; flags);
         def matches(re; flags): charge_regex(re; flags) | unmetered_matches(re; flags);
         def split_matches(re; flags): charge_regex(re; flags) | unmetered_split_matches(re; flags);
         def split_(re; flags): charge_regex(re; flags) | unmetered_split_(re; flags);",
    )
}

/// Definitions read after jaq-std's, so that programs calling the unmetered names get the
/// guarded ones.
pub(super) fn closing_defs() -> impl Iterator<Item = Def<&'static str>> {
    parsed(
        "def unmetered_matches(re; flags): matches(re; flags);
         def unmetered_split_matches(re; flags): split_matches(re; flags);
         def unmetered_split_(re; flags): split_(re; flags);",
    )
}

fn parsed(defs: &'static str) -> impl Iterator<Item = Def<&'static str>> {
    // These texts are constants of this module, checked by its tests.
    load::parse(defs, |p| p.defs()).unwrap_or_default().into_iter()
}

pub(super) fn native() -> Filter<RunPtr<Metered>> {
    ("charge_regex", native::v(2), charge_regex)
}

/// Counts the matches the next guarded native will find on the input, charging what it will
/// hold for them, and passes the input on. What it cannot make sense of, it leaves to the
/// native, which raises the error.
fn charge_regex(mut cv: Cv<'_, Metered>) -> ValXs<'_, super::Bounded> {
    let flags = cv.0.pop_var();
    let re = cv.0.pop_var();
    if let (Val::TStr(text), Val::TStr(re), Val::TStr(flags)) = (cv.1.val(), re.val(), flags.val())
        && let (Ok(re), Ok(flags)) = (std::str::from_utf8(re), std::str::from_utf8(flags))
        && let Some((regex, global)) = compiled(re, flags)
    {
        let per_match = PART_BYTES + GROUP_BYTES * regex.captures_len();
        budget::charge(PART_BYTES);
        for _ in regex.find_iter(text).take(if global { usize::MAX } else { 1 }) {
            budget::charge(per_match);
        }
    }
    Box::new(std::iter::once(Ok(cv.1)))
}

/// The regular expression as jaq-std builds it from `re` and `flags`, and whether it finds
/// every match.
fn compiled(re: &str, flags: &str) -> Option<(Regex, bool)> {
    let mut builder = RegexBuilder::new(re);
    let mut global = false;
    for flag in flags.chars() {
        match flag {
            'g' => global = true,
            'n' => {}
            'i' => _ = builder.case_insensitive(true),
            'm' => _ = builder.multi_line(true),
            's' => _ = builder.dot_matches_new_line(true),
            'l' => _ = builder.swap_greed(true),
            'x' => _ = builder.ignore_whitespace(true),
            'p' => _ = builder.multi_line(true).dot_matches_new_line(true),
            _ => return None,
        }
    }
    Some((builder.build().ok()?, global))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_definitions_parse() {
        assert_eq!(super::guard_defs().count(), 6);
        assert_eq!(super::closing_defs().count(), 3);
    }
}
