//! The query text of sources, shaped as the destinations' in [`super`]: listed oldest first
//! (`sources_created_at_id`), updated only at the expected `version`, which the update counts.

macro_rules! source_columns {
    () => {
        "id, name, kind, config, secrets, enabled, version, created_at, updated_at"
    };
}

pub const INSERT_SOURCE: &str =
    concat!("INSERT INTO sources (", source_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");

pub const SELECT_SOURCE: &str = concat!("SELECT ", source_columns!(), " FROM sources WHERE id = $1");

pub const LIST_SOURCES: &str =
    concat!("SELECT ", source_columns!(), " FROM sources ORDER BY created_at, id LIMIT $1 OFFSET $2");

pub const COUNT_SOURCES: &str = "SELECT COUNT(*) FROM sources";

pub const UPDATE_SOURCE: &str = concat!(
    "UPDATE sources SET name = $1, kind = $2, config = $3, secrets = $4, enabled = $5, \
     version = version + 1, updated_at = $6 WHERE id = $7 AND version = $8 RETURNING ",
    source_columns!()
);

pub const SOURCE_VERSION: &str = "SELECT version FROM sources WHERE id = $1";

pub const DELETE_SOURCE: &str = "DELETE FROM sources WHERE id = $1";

// ---- secrets at rest ----------------------------------------------------------------------

pub const ALL_SOURCE_SECRETS: &str = "SELECT id, secrets FROM sources ORDER BY id";

pub const RESEAL_SOURCE_SECRETS: &str = "UPDATE sources SET secrets = $1 WHERE id = $2";

// ---- the lease of a pull source -------------------------------------------------------------

/// Granted when nobody holds the lease, its owner renews it, or the holder's ran out.
pub const LEASE_SOURCE: &str = "UPDATE sources SET lease_owner = $1, lease_until = $2 \
     WHERE id = $3 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $4)";

pub const RELEASE_SOURCE: &str =
    "UPDATE sources SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2";
