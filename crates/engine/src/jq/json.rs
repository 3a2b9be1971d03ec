//! JSON text in and out of a run: `fromjson`, `tojson`/`tostring`, and the run's output.
//!
//! Parsing and writing recurse on the native stack, so text is scanned first (`Scan`, no
//! recursion) for how deeply it nests; writing stops at a byte limit, so a value that shares
//! its parts (and stands for far more text than its memory holds) costs no more than that.

use std::io;

use jaq_json::write::{Pp, write};
use serde_json::Value;

use super::budget;
use super::value::{Bounded, ELEMENT, MAX_VALUE_DEPTH, STRING};

/// The longest run of digits a number in parsed text may have: reading a longer integer
/// takes time quadratic in its length.
const MAX_DIGITS: usize = 4_096;

/// What a scan of JSON text (jaq's superset: comments, byte strings, `NaN` …) finds without
/// parsing it.
#[derive(Debug, Default)]
pub(super) struct Scan {
    /// How deeply arrays and objects nest.
    pub deepest: usize,
    /// Strings, arrays, objects and separators: what parsing makes values of.
    pub tokens: usize,
    /// A run of digits longer than `MAX_DIGITS`.
    pub long_number: bool,
}

impl Scan {
    pub(super) fn of(text: &[u8]) -> Self {
        let mut scan = Self::default();
        let (mut depth, mut digits) = (0_usize, 0_usize);
        let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
        for &byte in text {
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            if in_comment {
                in_comment = byte != b'\n';
                continue;
            }
            if byte.is_ascii_digit() {
                digits += 1;
                scan.long_number |= digits > MAX_DIGITS;
                continue;
            }
            digits = 0;
            match byte {
                b'"' => {
                    in_string = true;
                    scan.tokens += 1;
                }
                b'#' => in_comment = true,
                b'[' | b'{' => {
                    depth += 1;
                    scan.deepest = scan.deepest.max(depth);
                    scan.tokens += 1;
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b',' | b':' => scan.tokens += 1,
                _ => {}
            }
        }
        scan
    }
}

/// `fromjson`: the values `text` holds, each bounded by how deeply the text nests.
pub(super) fn parse(text: &[u8]) -> Result<Vec<Result<Bounded, String>>, String> {
    let scan = Scan::of(text);
    if scan.deepest > MAX_VALUE_DEPTH as usize {
        return Err(format!("it is nested deeper than {MAX_VALUE_DEPTH} levels"));
    }
    if scan.long_number {
        return Err(format!("it has a number of more than {MAX_DIGITS} digits"));
    }
    budget::charge(text.len().saturating_add(scan.tokens.saturating_mul(ELEMENT + STRING)));
    budget::work(u64::try_from(text.len()).unwrap_or(u64::MAX));
    let depth = u32::try_from(scan.deepest).unwrap_or(u32::MAX);
    let mut values = Vec::new();
    for parsed in jaq_json::read::parse_many(text) {
        budget::work(1);
        match parsed {
            Ok(val) => values.push(Ok(Bounded::nested(val, depth))),
            // The parser stays where it failed: what follows is the same error again.
            Err(e) => {
                values.push(Err(e.to_string()));
                break;
            }
        }
    }
    Ok(values)
}

/// A writer that fails once more than `max` bytes are written.
struct Capped {
    bytes: Vec<u8>,
    max: usize,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.max - self.bytes.len() {
            return Err(io::Error::other("the text is too long"));
        }
        budget::work(u64::try_from(buf.len()).unwrap_or(u64::MAX));
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON text of at most `max` bytes, if it fits.
fn written(value: &Bounded, max: usize) -> Option<Vec<u8>> {
    let mut out = Capped { bytes: Vec::new(), max };
    write(&mut out, &Pp::default(), 0, value.val()).ok()?;
    Some(out.bytes)
}

/// `value` as JSON text, charged to the run; text longer than the budget left ends the run.
pub(super) fn write_charged(value: &Bounded) -> Vec<u8> {
    let Some(text) = written(value, budget::remaining_memory()) else {
        budget::out_of_memory();
    };
    budget::charge(text.len());
    text
}

/// Why an output is not usable.
pub(super) enum OutputError {
    TooLarge,
    TooDeep,
    NotJson(String),
}

/// The run's output as a `serde_json::Value`: at most `max_bytes` of JSON nested at most
/// `max_depth` levels (checked on the text, before `serde_json` reads it).
pub(super) fn output(value: &Bounded, max_bytes: usize, max_depth: usize) -> Result<Value, OutputError> {
    let text = written(value, max_bytes).ok_or(OutputError::TooLarge)?;
    if Scan::of(&text).deepest > max_depth {
        return Err(OutputError::TooDeep);
    }
    serde_json::from_slice(&text).map_err(|e| OutputError::NotJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::Scan;

    #[test]
    fn scans_count_nesting_outside_strings_and_comments() {
        assert_eq!(Scan::of(br#"[[1], {"a": [2]}]"#).deepest, 3);
        assert_eq!(Scan::of(br#"["[[[", "\"[[", b"[\"["]"#).deepest, 1);
        assert_eq!(Scan::of(b"[ # [[[[ \"\n [1]]").deepest, 2);
        assert!(!Scan::of("1".repeat(4_096).as_bytes()).long_number);
        assert!(Scan::of("1".repeat(4_097).as_bytes()).long_number);
    }
}
