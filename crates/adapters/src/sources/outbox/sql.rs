//! The statements an `outbox` source runs, written once for both dialects. Table and column
//! names are spliced in, double-quoted; they are plain identifiers ([`super::config`] refuses
//! anything else), and every value is bound.

use super::config::{AfterRelay, OutboxConfig};

/// Ids relayed per SQLite statement: under its 999 host parameters.
pub const SQLITE_CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// How a PostgreSQL id column is compared with the ids read back as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMatch {
    /// `text`, `varchar`: as it is, so its index serves.
    Text,
    /// `uuid`: the ids cast to `uuid[]`, so its index serves.
    Uuid,
    /// Anything else: the column cast to text.
    Cast,
}

impl IdMatch {
    /// How to compare a column of PostgreSQL type `type_name` (as `format_type` names it).
    pub fn for_type(type_name: &str) -> Self {
        match type_name {
            "text" | "character varying" | "character" => Self::Text,
            "uuid" => Self::Uuid,
            _ => Self::Cast,
        }
    }
}

/// The statements of one source.
#[derive(Debug, Clone)]
pub struct Statements {
    dialect: Dialect,
    table: String,
    id: String,
    mark: String,
    after_relay: AfterRelay,
    id_match: IdMatch,
    /// `SELECT … LIMIT <bound>`: id, event_type, ordering_key, payload, then the time columns.
    pub select: String,
    /// `SELECT count(*)` of the rows not yet relayed.
    pub count: String,
}

/// `name` double-quoted; `schema.table` as `"schema"."table"`.
pub fn quote(name: &str) -> String {
    name.split('.').map(|part| format!("\"{part}\"")).collect::<Vec<_>>().join(".")
}

impl Statements {
    pub fn new(config: &OutboxConfig, dialect: Dialect, id_match: IdMatch) -> Self {
        let c = &config.columns;
        let table = quote(&config.table);
        let id = quote(&c.id);
        let mark = quote(&config.mark_column);
        let mut pending = format!("{id} IS NOT NULL");
        if config.after_relay == AfterRelay::Mark {
            pending.push_str(&format!(" AND {mark} IS NULL"));
        }
        let order = match &config.sequence_column {
            Some(sequence) => format!("{}, {id}", quote(sequence)),
            None => format!("{}, {id}", quote(&c.created_at)),
        };
        let (event_type, key, payload, created_at) =
            (quote(&c.event_type), quote(&c.aggregate_id), quote(&c.payload), quote(&c.created_at));
        let select = match dialect {
            Dialect::Postgres => format!(
                "SELECT {id}::text AS id, {event_type}::text AS event_type, {key}::text AS ordering_key, \
                 {payload}::text AS payload, \
                 (extract(epoch FROM {created_at}) * 1000)::bigint AS written_at \
                 FROM {table} WHERE {pending} ORDER BY {order} LIMIT $1"
            ),
            // SQLite keeps a time as text or a number; each is read apart and parsed in Rust.
            Dialect::Sqlite => format!(
                "SELECT CAST({id} AS TEXT) AS id, CAST({event_type} AS TEXT) AS event_type, \
                 CAST({key} AS TEXT) AS ordering_key, CAST({payload} AS TEXT) AS payload, \
                 CASE typeof({created_at}) WHEN 'integer' THEN {created_at} END AS written_int, \
                 CASE typeof({created_at}) WHEN 'text' THEN {created_at} END AS written_text \
                 FROM {table} WHERE {pending} ORDER BY {order} LIMIT ?"
            ),
        };
        let count = format!("SELECT count(*) FROM {table} WHERE {pending}");
        Self { dialect, table, id, mark, after_relay: config.after_relay, id_match, select, count }
    }

    /// Deletes or marks the rows of `ids`: all of them on PostgreSQL (one text array bound),
    /// `ids` of them on SQLite (one placeholder each, at most [`SQLITE_CHUNK`]).
    pub fn relay(&self, ids: usize) -> String {
        let Self { table, id, mark, .. } = self;
        let matching = match self.dialect {
            Dialect::Postgres => match self.id_match {
                IdMatch::Text => format!("{id} = ANY($1)"),
                IdMatch::Uuid => format!("{id} = ANY(CAST($1 AS uuid[]))"),
                IdMatch::Cast => format!("{id}::text = ANY($1)"),
            },
            Dialect::Sqlite => format!("{id} IN ({})", vec!["?"; ids.max(1)].join(", ")),
        };
        let now = match self.dialect {
            Dialect::Postgres => "now()",
            // The outbox crate's format: RFC 3339 UTC with milliseconds.
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        };
        match self.after_relay {
            AfterRelay::Delete => format!("DELETE FROM {table} WHERE {matching}"),
            AfterRelay::Mark => format!("UPDATE {table} SET {mark} = {now} WHERE {matching}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(raw: serde_json::Value) -> OutboxConfig {
        OutboxConfig::parse(raw).expect("valid")
    }

    #[test]
    fn names_are_quoted_and_values_bound() {
        let c = config(json!({"database_url": "sqlite://a.db", "table": "app.events"}));
        let s = Statements::new(&c, Dialect::Postgres, IdMatch::Text);
        assert!(
            s.select.contains(
                "FROM \"app\".\"events\" WHERE \"id\" IS NOT NULL ORDER BY \"created_at\", \"id\" LIMIT $1"
            ),
            "{}",
            s.select
        );
        assert_eq!(s.relay(3), "DELETE FROM \"app\".\"events\" WHERE \"id\" = ANY($1)");
        assert_eq!(s.count, "SELECT count(*) FROM \"app\".\"events\" WHERE \"id\" IS NOT NULL");
    }

    #[test]
    fn mark_mode_reads_unmarked_rows_and_marks_them() {
        let c = config(
            json!({"database_url": "sqlite://a.db", "after_relay": "mark", "mark_column": "done_at", "sequence_column": "seq"}),
        );
        let s = Statements::new(&c, Dialect::Sqlite, IdMatch::Text);
        assert!(
            s.select.contains(
                "WHERE \"id\" IS NOT NULL AND \"done_at\" IS NULL ORDER BY \"seq\", \"id\" LIMIT ?"
            ),
            "{}",
            s.select
        );
        assert_eq!(
            s.relay(2),
            "UPDATE \"outbox\" SET \"done_at\" = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE \"id\" IN (?, ?)"
        );
    }

    #[test]
    fn postgres_ids_of_other_types_are_compared_as_their_type_or_as_text() {
        let c = config(json!({"database_url": "sqlite://a.db"}));
        let uuid = Statements::new(&c, Dialect::Postgres, IdMatch::for_type("uuid"));
        assert!(uuid.relay(1).ends_with("\"id\" = ANY(CAST($1 AS uuid[]))"));
        let bigint = Statements::new(&c, Dialect::Postgres, IdMatch::for_type("bigint"));
        assert!(bigint.relay(1).ends_with("\"id\"::text = ANY($1)"));
    }
}
