use serde::Serialize;

/// How many characters of a client-supplied value an error message or a log line repeats.
pub const EXCERPT_CHARS: usize = 64;

/// `value` cut to its first [`EXCERPT_CHARS`] characters (marked with `…` when cut), for
/// messages and logs that repeat what a client sent without growing with it.
pub fn excerpt(value: &str) -> String {
    excerpt_of(value, EXCERPT_CHARS)
}

/// `value` cut to its first `chars` characters, marked with `…` when cut.
pub fn excerpt_of(value: &str, chars: usize) -> String {
    match value.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// One violated rule, named by the field (a dotted path or a JSON pointer) it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Input that broke one or more rules; every violation is listed, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.0))]
pub struct ValidationError(pub Vec<FieldError>);

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "the request is invalid".to_owned(),
        [one] => format!("{}: {}", one.field, one.message),
        [first, rest @ ..] => format!("{}: {} (and {} more)", first.field, first.message, rest.len()),
    }
}

impl ValidationError {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    /// Reports every violation against `field` instead (for a value parsed out of context).
    pub fn at(self, field: &str) -> Self {
        Self(self.0.into_iter().map(|e| FieldError::new(field, e.message)).collect())
    }

    /// Reports every field under `prefix` (see [`field_path`]), so a validator of a nested
    /// value names full paths: `url` under `config` is `config.url`.
    pub fn nested(self, prefix: &str) -> Self {
        Self(self.0.into_iter().map(|e| FieldError::new(field_path(prefix, &e.field), e.message)).collect())
    }
}

/// The path of `field`, itself a path inside the value at `prefix`: dotted keys and `[i]`
/// indexes (`config.headers.X-Foo`, `event_types[2]`). An empty `field` is the value itself.
pub fn field_path(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_owned()
    } else if prefix.is_empty() || field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

/// Collects violations across several checks so a request learns about all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn absorb(&mut self, error: ValidationError) {
        self.0.extend(error.0);
    }

    /// Records the error of `result`, if any, and hands back its value.
    pub fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.absorb(error);
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), ValidationError> {
        if self.0.is_empty() { Ok(()) } else { Err(ValidationError(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_keep_short_values_and_cut_long_ones_on_a_character() {
        assert_eq!(excerpt("short"), "short");
        let exact = "x".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), exact);
        let long = "é".repeat(5000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt_of("abcdef", 3), "abc…");
        assert_eq!(excerpt_of("abc", 3), "abc");
    }

    #[test]
    fn nested_fields_join_keys_with_dots_and_indexes_with_brackets() {
        let nested = |field: &str| ValidationError::single(field, "m").nested("config").0[0].field.clone();
        assert_eq!(nested("url"), "config.url");
        assert_eq!(nested("headers.X-Foo"), "config.headers.X-Foo");
        assert_eq!(nested("[2]"), "config[2]");
        assert_eq!(nested(""), "config");
        assert_eq!(field_path("", "per_page"), "per_page");
    }
}
