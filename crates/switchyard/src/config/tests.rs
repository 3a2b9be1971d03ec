//! Config loading, isolated with `figment::Jail` (a temporary working directory and
//! environment, restored afterwards).

use std::net::SocketAddr;
use std::path::Path;

use figment::Jail;

use super::*;

/// Runs `test` in a fresh `Jail` with an empty environment.
#[expect(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
fn jailed(test: impl FnOnce(&mut Jail)) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        test(jail);
        Ok(())
    });
}

fn write(jail: &Jail, name: &str, contents: &str) {
    jail.create_file(name, contents).expect("writing a test file");
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

/// Loads with no `--config` and no flags.
fn load_plain() -> Result<Config, ConfigError> {
    Config::load(None, &Overrides::default())
}

/// The config, or a panic showing every problem.
fn must(result: Result<Config, ConfigError>) -> Config {
    result.unwrap_or_else(|err| panic!("unexpected config error:\n{err}"))
}

fn problems_of(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(config) => panic!("expected a config error, got {config:?}"),
        Err(err) => err.problems().join("\n"),
    }
}

#[test]
fn defaults_apply_without_file_env_or_flags() {
    jailed(|_| {
        let config = must(load_plain());
        assert_eq!(config, Config::default());
        assert_eq!(config.server.listen, addr("127.0.0.1:8080"));
        assert_eq!(config.database.url, "sqlite://switchyard.db");
        assert_eq!(config.database.max_connections, 8);
        assert!(!config.security.allow_private_destinations);
        assert_eq!(config.limits.max_payload_bytes, 262_144);
        assert_eq!(config.limits.max_body_bytes, 1_048_576);
        assert!(!config.ingest.require_registered_types);
        assert_eq!(config.engine.concurrency, 512);
        assert_eq!(config.engine.lease_ms, 60_000);
        assert_eq!(config.log.format, LogFormat::Pretty);
        assert_eq!(config.log.level, "info");
    });
}

#[test]
fn env_overrides_the_file_which_overrides_defaults() {
    jailed(|jail| {
        write(
            jail,
            DEFAULT_FILE,
            r#"
            [server]
            listen = "0.0.0.0:9000"
            [database]
            url = "sqlite://from-file.db"
            [log]
            format = "json"
            "#,
        );
        jail.set_env("SWITCHYARD_DATABASE__URL", "sqlite://from-env.db");
        jail.set_env("SWITCHYARD_DATABASE__MAX_CONNECTIONS", "3");
        jail.set_env("SWITCHYARD_INGEST__REQUIRE_REGISTERED_TYPES", "true");
        let config = must(load_plain());
        assert_eq!(config.server.listen, addr("0.0.0.0:9000"), "from the file");
        assert_eq!(config.log.format, LogFormat::Json, "from the file");
        assert_eq!(config.database.url, "sqlite://from-env.db", "env beats the file");
        assert_eq!(config.database.max_connections, 3);
        assert!(config.ingest.require_registered_types);
        assert_eq!(config.engine, EngineConfig::default(), "untouched sections keep defaults");
    });
}

#[test]
fn flags_override_env_and_file() {
    jailed(|jail| {
        write(jail, DEFAULT_FILE, "[server]\nlisten = \"127.0.0.1:1111\"\n");
        jail.set_env("SWITCHYARD_SERVER__LISTEN", "127.0.0.1:2222");
        jail.set_env("SWITCHYARD_DATABASE__URL", "sqlite://env.db");
        let overrides = Overrides {
            listen: Some(addr("127.0.0.1:3333")),
            database_url: Some("sqlite://flag.db".to_owned()),
        };
        let config = must(Config::load(None, &overrides));
        assert_eq!(config.server.listen, addr("127.0.0.1:3333"));
        assert_eq!(config.database.url, "sqlite://flag.db");
    });
}

#[test]
fn an_explicit_config_file_replaces_the_default_one() {
    jailed(|jail| {
        write(jail, DEFAULT_FILE, "[engine]\nconcurrency = 1\n");
        write(jail, "other.toml", "[engine]\nlease_ms = 5\n");
        let config = must(Config::load(Some(Path::new("other.toml")), &Overrides::default()));
        assert_eq!(config.engine.lease_ms, 5);
        assert_eq!(config.engine.concurrency, 512, "the default file is not read");
    });
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    jailed(|_| {
        let problems = problems_of(Config::load(Some(Path::new("nope.toml")), &Overrides::default()));
        assert!(problems.contains("nope.toml"), "{problems}");
    });
}

#[test]
fn unknown_keys_in_the_file_are_rejected_by_name() {
    jailed(|jail| {
        write(jail, DEFAULT_FILE, "[server]\nlisten = \"127.0.0.1:1\"\nport = 80\n");
        let problems = problems_of(load_plain());
        assert!(problems.contains("server.port"), "{problems}");
        assert!(problems.contains(DEFAULT_FILE), "names the file: {problems}");

        write(jail, DEFAULT_FILE, "[limit]\nmax_body_bytes = 1\n");
        let problems = problems_of(load_plain());
        assert!(problems.contains("`limit`"), "{problems}");
    });
}

#[test]
fn unknown_keys_in_the_environment_are_rejected_by_name() {
    jailed(|jail| {
        jail.set_env("SWITCHYARD_SERVER__PORT", "80");
        let problems = problems_of(load_plain());
        assert!(problems.contains("SWITCHYARD_SERVER__PORT"), "{problems}");

        jail.clear_env();
        jail.set_env("SWITCHYARD_DATABSE__URL", "sqlite://x.db");
        let problems = problems_of(load_plain());
        assert!(problems.contains("SWITCHYARD_DATABSE"), "{problems}");
    });
}

#[test]
fn the_reserved_master_key_variable_is_not_a_config_key() {
    jailed(|jail| {
        jail.set_env("SWITCHYARD_MASTER_KEY", "c2VjcmV0");
        assert_eq!(must(load_plain()), Config::default());
    });
}

#[test]
fn invalid_values_are_all_reported_one_per_line() {
    jailed(|jail| {
        write(
            jail,
            DEFAULT_FILE,
            "[limits]\nmax_payload_bytes = 0\nmax_body_bytes = 0\n[engine]\nconcurrency = 0\n[log]\nlevel = \"info,=[\"\n",
        );
        let err = load_plain().expect_err("invalid values");
        let problems = err.problems();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("limits.max_payload_bytes"), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("log.level")), "{problems:?}");
        assert_eq!(err.to_string().lines().count(), 4);
    });
}

#[test]
fn database_pool_and_node_settings_are_read_and_checked() {
    jailed(|jail| {
        write(
            jail,
            DEFAULT_FILE,
            "[database]\nurl = \"postgres://app@db/hub\"\nmax_connections = 20\nmin_connections = 2\n\
             acquire_timeout_ms = 5000\nstatement_timeout_ms = 15000\n[engine]\nnode_id = \"node-a\"\n",
        );
        let config = must(load_plain());
        assert_eq!((config.database.min_connections, config.database.acquire_timeout_ms), (2, 5_000));
        assert_eq!(config.database.statement_timeout_ms, Some(15_000));
        assert_eq!(config.engine.node_id.as_deref(), Some("node-a"));

        write(
            jail,
            DEFAULT_FILE,
            "[database]\nmax_connections = 2\nmin_connections = 3\nacquire_timeout_ms = 0\n\
             statement_timeout_ms = 0\n[engine]\nnode_id = \"a node\"\n",
        );
        let problems = load_plain().expect_err("invalid").problems().to_vec();
        assert_eq!(problems.len(), 4, "{problems:?}");
        for key in [
            "database.acquire_timeout_ms",
            "database.statement_timeout_ms",
            "database.min_connections",
            "engine.node_id",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(key)), "{key}: {problems:?}");
        }
    });
}

#[test]
fn values_of_the_wrong_shape_are_rejected_with_their_key() {
    jailed(|jail| {
        write(jail, DEFAULT_FILE, "[server]\nlisten = \"localhost\"\n");
        let problems = problems_of(load_plain());
        assert!(problems.contains("server.listen"), "{problems}");

        write(jail, DEFAULT_FILE, "[log]\nformat = \"xml\"\n");
        let problems = problems_of(load_plain());
        assert!(problems.contains("log.format") && problems.contains("pretty, json"), "{problems}");

        write(jail, DEFAULT_FILE, "");
        jail.set_env("SWITCHYARD_LIMITS__MAX_BODY_BYTES", "lots");
        let problems = problems_of(load_plain());
        assert!(problems.contains("SWITCHYARD_LIMITS__MAX_BODY_BYTES"), "{problems}");
    });
}

#[test]
fn printed_config_masks_the_database_password() {
    let mut config = Config::default();
    config.database.url = "postgres://switchyard:hunter2@db.internal:5432/hub".to_owned();
    let printed = config.to_masked_toml().expect("printable");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("postgres://switchyard:***@db.internal:5432/hub"), "{printed}");

    let parsed: toml::Value = toml::from_str(&printed).expect("valid TOML");
    assert_eq!(parsed["server"]["listen"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(parsed["engine"]["concurrency"].as_integer(), Some(512));
    assert_eq!(parsed["log"]["format"].as_str(), Some("pretty"));
}

#[test]
fn printed_config_without_secrets_round_trips() {
    let config = Config::default();
    let printed = config.to_masked_toml().expect("printable");
    let back: Config = toml::from_str(&printed).expect("parses back");
    assert_eq!(back, config);
}

#[test]
fn max_unfinished_attempts_defaults_to_three_and_must_be_at_least_one() {
    jailed(|jail| {
        assert_eq!(must(load_plain()).engine.max_unfinished_attempts, 3);
        let example: Config =
            toml::from_str(include_str!("../../../../switchyard.example.toml")).expect("the example parses");
        assert_eq!(example.engine, EngineConfig::default(), "the example shows the defaults");

        jail.set_env("SWITCHYARD_ENGINE__MAX_UNFINISHED_ATTEMPTS", "5");
        assert_eq!(must(load_plain()).engine.max_unfinished_attempts, 5);
        jail.set_env("SWITCHYARD_ENGINE__MAX_UNFINISHED_ATTEMPTS", "0");
        assert_eq!(problems_of(load_plain()), "engine.max_unfinished_attempts: must be greater than 0");
    });
}

#[test]
fn the_fast_queue_defaults_to_4096_and_zero_turns_it_off() {
    jailed(|jail| {
        assert_eq!(must(load_plain()).engine.fast_queue, 4_096);
        jail.set_env("SWITCHYARD_ENGINE__FAST_QUEUE", "0");
        let config = must(load_plain());
        assert_eq!(config.engine.fast_queue, 0, "0 is valid: no fast path");
        jail.set_env("SWITCHYARD_ENGINE__FAST_QUEUE", "16");
        assert_eq!(must(load_plain()).engine.fast_queue, 16);
    });
}

#[test]
fn audit_entries_are_kept_a_year_by_default_and_at_least_a_day() {
    jailed(|jail| {
        let retention = must(load_plain()).retention;
        assert_eq!((retention.days, retention.audit_days), (30, 365));
        write(jail, DEFAULT_FILE, "[retention]\naudit_days = 90\n");
        assert_eq!(must(load_plain()).retention.audit_days, 90);
        jail.set_env("SWITCHYARD_RETENTION__AUDIT_DAYS", "0");
        assert_eq!(problems_of(load_plain()), "retention.audit_days: must be greater than 0");
    });
}
