//! Names a broker destination publishes to, with the event's type or ordering key in them:
//! `orders.{event_type}`, `events/{ordering_key}`. Checked when a destination is written (an
//! unknown placeholder is refused then), filled in for each message.

use switchyard_core::event::Event;

const EVENT_TYPE: &str = "event_type";
const ORDERING_KEY: &str = "ordering_key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    EventType,
    OrderingKey,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Template<'a> {
    /// Parses `raw`; the error says what is wrong, for a field's message.
    pub fn parse(raw: &'a str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err("has a '}' without its '{'".to_owned());
            }
            if open > 0 {
                parts.push(Part::Text(&rest[..open]));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err("has a '{' without its '}'".to_owned());
            };
            parts.push(match &after[..close] {
                EVENT_TYPE => Part::EventType,
                ORDERING_KEY => Part::OrderingKey,
                other => {
                    return Err(format!(
                        "has an unknown placeholder {{{}}}; use {{{EVENT_TYPE}}} or {{{ORDERING_KEY}}}",
                        other.chars().take(32).collect::<String>()
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        Ok(Self { parts })
    }

    /// The template with each placeholder replaced by `sample`: what a check of the filled-in
    /// name's syntax sees when a destination is written.
    pub fn sample(&self, sample: &str) -> String {
        self.fill(sample, sample)
    }

    /// The name for `event`; an error when the template needs an ordering key the event lacks.
    pub fn render(&self, event: &Event) -> Result<String, String> {
        let needs_key = self.parts.contains(&Part::OrderingKey);
        let key = match (&event.ordering_key, needs_key) {
            (Some(key), _) => key.as_str(),
            (None, false) => "",
            (None, true) => {
                return Err(format!(
                    "the name template needs {{{ORDERING_KEY}}} and event {} has none",
                    event.event_id
                ));
            }
        };
        Ok(self.fill(event.event_type.as_str(), key))
    }

    fn fill(&self, event_type: &str, ordering_key: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text,
                Part::EventType => event_type,
                Part::OrderingKey => ordering_key,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_parsed_and_filled() {
        let template = Template::parse("orders.{event_type}.{ordering_key}").unwrap();
        assert_eq!(template.sample("x"), "orders.x.x");
        assert_eq!(Template::parse("plain").unwrap().sample("x"), "plain");
        assert_eq!(Template::parse("{event_type}").unwrap().sample("t"), "t");
    }

    #[test]
    fn unknown_and_unbalanced_placeholders_are_refused() {
        let unknown = Template::parse("orders.{type}").unwrap_err();
        assert!(unknown.contains("{type}") && unknown.contains("{event_type}"), "{unknown}");
        assert!(Template::parse("orders.{event_type").unwrap_err().contains("without its '}'"));
        assert!(Template::parse("orders.}").unwrap_err().contains("without its '{'"));
        assert!(Template::parse("a{}b").is_err());
    }
}
