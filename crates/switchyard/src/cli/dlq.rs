//! `switchyard dlq …`: dead deliveries listed and replayed straight in the database.
//!
//! A replay only makes the deliveries due again; a running server claims them within its poll
//! interval, so no server needs to be reachable from where the command runs.

use std::io::{self, BufRead as _, IsTerminal as _, Write};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use switchyard_core::delivery::{Delivery, DeliveryFilter, DeliveryStatus};
use switchyard_core::event::EventType;
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::page::ListRequest;
use switchyard_core::store::Store;
use switchyard_core::time::{Millis, format_rfc3339, now_millis, parse_rfc3339};

use super::Failure;
use super::table::render_table;
use crate::config::Config;
use crate::startup::open_database;

/// Most dead deliveries `dlq list` shows at once.
const MAX_LIST: u32 = 1_000;
/// Dead deliveries replayed per transaction, so a large replay never holds the write lock long.
const REPLAY_BATCH: u32 = 500;
/// Longest `last_error` a table cell shows, in characters.
const ERROR_CELL_CHARS: usize = 60;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead deliveries: the most recent matches, oldest first, then how many match.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// How many to show, 1 to 1000 (the most recent).
        #[arg(long, default_value_t = 50, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LIST)))]
        limit: u32,
        /// Print one JSON object per delivery and line instead of the table (the match count
        /// goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Replay matching dead deliveries: due now, with a fresh attempt budget (earlier attempts
    /// are kept). Asks first unless `--yes`; a running server picks them up within its poll
    /// interval.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay without asking; required when stdin is not a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Which dead deliveries a command works on; every flag narrows, none selects all.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only deliveries to this destination (`dst_…`).
    #[arg(long, value_name = "ID")]
    pub destination: Option<String>,
    /// Only deliveries of this subscription (`sub_…`).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Only deliveries of events of exactly this type, e.g. order.created.
    #[arg(long, value_name = "TYPE", value_parser = parse_event_type)]
    pub event_type: Option<EventType>,
    /// Only deliveries created at or after this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub since: Option<Millis>,
    /// Only deliveries created before this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub until: Option<Millis>,
}

impl FilterArgs {
    /// The store filter for dead deliveries, once the flags are known to agree.
    fn into_filter(self) -> Result<DeliveryFilter, Failure> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(Failure::Usage(anyhow!("--since must be earlier than --until")));
        }
        Ok(DeliveryFilter {
            status: Some(DeliveryStatus::Dead),
            event_id: None,
            destination_id: self.destination.map(DestinationId::from_trusted),
            subscription_id: self.subscription.map(SubscriptionId::from_trusted),
            event_type: self.event_type,
            since: self.since,
            until: self.until,
        })
    }
}

fn parse_event_type(raw: &str) -> Result<EventType, String> {
    EventType::parse(raw)
        .map_err(|err| err.0.into_iter().map(|violation| violation.message).collect::<Vec<_>>().join("; "))
}

fn parse_instant(raw: &str) -> Result<Millis, String> {
    parse_rfc3339(raw).ok_or_else(|| "must be an RFC 3339 date-time, e.g. 2025-01-31T12:00:00Z".to_owned())
}

/// Runs one `dlq` command against the configured database, migrating it first.
pub async fn run(config: &Config, command: DlqCommand) -> Result<(), Failure> {
    match command {
        DlqCommand::List { filter, limit, json } => {
            let filter = filter.into_filter()?;
            let store = open_database(config).await?.store();
            list(store.as_ref(), &filter, limit, json).await?;
        }
        DlqCommand::Replay { filter, yes } => {
            let filter = filter.into_filter()?;
            let store = open_database(config).await?.store();
            replay(store.as_ref(), &filter, yes).await?;
        }
    }
    Ok(())
}

async fn list(store: &dyn Store, filter: &DeliveryFilter, limit: u32, json: bool) -> anyhow::Result<()> {
    let total = store.count_dead(filter).await.context("counting dead deliveries")?;
    let deliveries = most_recent(store, filter, limit, total).await?;
    let summary = format!("{total} dead deliveries match\n");
    let mut stdout = io::stdout().lock();
    if json {
        for delivery in &deliveries {
            let line = serde_json::to_string(delivery).context("rendering a delivery as JSON")?;
            writeln!(stdout, "{line}").context("writing to stdout")?;
        }
        io::stderr().write_all(summary.as_bytes()).context("writing to stderr")?;
    } else {
        stdout.write_all(render_dead_table(&deliveries).as_bytes()).context("writing to stdout")?;
        stdout.write_all(summary.as_bytes()).context("writing to stdout")?;
    }
    stdout.flush().context("writing to stdout")
}

/// The last `limit` of the `total` matching dead deliveries, in creation order. Numbered pages
/// of `limit` items put them on at most two pages.
async fn most_recent(
    store: &dyn Store,
    filter: &DeliveryFilter,
    limit: u32,
    total: u64,
) -> anyhow::Result<Vec<Delivery>> {
    let per_page = u64::from(limit.max(1));
    let first_wanted = total.saturating_sub(per_page);
    let first_page = first_wanted / per_page + 1;
    let mut deliveries = Vec::new();
    for page in [first_page, first_page + 1] {
        if (page - 1) * per_page >= total {
            break;
        }
        let page = u32::try_from(page).context("too many dead deliveries to page through")?;
        let listing = store
            .list_deliveries(filter, ListRequest::Page { page, per_page: limit })
            .await
            .context("listing dead deliveries")?;
        deliveries.extend(listing.items);
    }
    // Deliveries replayed or gone dead since the count shift the window a little; never show
    // more than asked.
    let skip = usize::try_from(first_wanted % per_page).unwrap_or(0).min(deliveries.len());
    let mut deliveries = deliveries.split_off(skip);
    deliveries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(deliveries)
}

async fn replay(store: &dyn Store, filter: &DeliveryFilter, yes: bool) -> Result<(), Failure> {
    let count = store.count_dead(filter).await.context("counting dead deliveries")?;
    if count > 0 && !yes {
        if !io::stdin().is_terminal() {
            return Err(Failure::Usage(anyhow!(
                "refusing to replay {count} dead deliveries without confirmation: stdin is not a \
                 terminal; pass --yes to replay from a script"
            )));
        }
        if !confirm(format!("Replay {count} dead deliveries? [y/N] ")).await? {
            return Err(anyhow!("cancelled; nothing was replayed").into());
        }
    }

    let bar = progress_bar(count);
    let mut replayed = 0;
    // Bounded by the count seen at the start, so deliveries that die again meanwhile (a server
    // is working on the replayed ones) are not replayed in a loop.
    while replayed < count {
        let batch = u32::try_from(count - replayed).map_or(REPLAY_BATCH, |left| left.min(REPLAY_BATCH));
        match store.replay_dead(filter, now_millis(), batch).await {
            Ok(0) => break,
            Ok(rows) => {
                replayed += rows;
                bar.set_position(replayed);
            }
            Err(err) => {
                bar.abandon();
                return Err(anyhow::Error::new(err)
                    .context(format!("replaying dead deliveries stopped after {replayed} of {count}"))
                    .into());
            }
        }
    }
    bar.finish_and_clear();
    if replayed < count {
        tracing::info!(
            replayed,
            count,
            "fewer dead deliveries were left than counted; someone else replayed some"
        );
    }
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "replayed {replayed} dead deliveries")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    Ok(())
}

/// Asks `prompt` on stderr and reads the answer from stdin; only `y` or `yes` agrees.
async fn confirm(prompt: String) -> anyhow::Result<bool> {
    let answer = tokio::task::spawn_blocking(move || -> io::Result<String> {
        let mut stderr = io::stderr().lock();
        stderr.write_all(prompt.as_bytes())?;
        stderr.flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        Ok(answer)
    })
    .await
    .context("waiting for the confirmation")?
    .context("reading the confirmation")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// A bar on stderr while it is a terminal; hidden otherwise, so logs and pipes stay clean.
fn progress_bar(count: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("replaying [{bar:40}] {pos}/{len} ({elapsed})")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(count).with_style(style)
}

/// The table `dlq list` prints: a header, then one aligned row per delivery.
pub fn render_dead_table(deliveries: &[Delivery]) -> String {
    const HEADER: [&str; 6] = ["ID", "EVENT_ID", "DESTINATION_ID", "ATTEMPTS", "LAST_ERROR", "UPDATED"];
    let rows: Vec<[String; 6]> = deliveries
        .iter()
        .map(|delivery| {
            [
                delivery.id.to_string(),
                one_line(delivery.event_id.as_str(), usize::MAX),
                delivery.destination_id.to_string(),
                delivery.attempt_count.to_string(),
                one_line(delivery.last_error.as_deref().unwrap_or("-"), ERROR_CELL_CHARS),
                format_rfc3339(delivery.updated_at),
            ]
        })
        .collect();
    render_table(HEADER, &rows)
}

/// `text` on one line (control characters become spaces), cut to `max` characters with `…`.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.chars().map(|c| if c.is_control() { ' ' } else { c });
    if text.chars().count() <= max {
        return flat.collect();
    }
    let mut cut: String = flat.take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use switchyard_core::event::EventId;
    use switchyard_core::id::DeliveryId;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse_dlq(args: &[&str]) -> Result<DlqCommand, clap::Error> {
        let cli = Cli::try_parse_from(["switchyard", "dlq"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Dlq(dlq) => Ok(dlq.command),
            other => panic!("not a dlq command: {other:?}"),
        }
    }

    fn dead(id: &str, error: Option<&str>) -> Delivery {
        Delivery {
            id: DeliveryId::from_trusted(id),
            event_id: EventId::from_trusted("evt-1"),
            subscription_id: SubscriptionId::from_trusted("sub_1"),
            destination_id: DestinationId::from_trusted("dst_1"),
            status: DeliveryStatus::Dead,
            attempt_count: 12,
            unfinished_attempts: 0,
            next_attempt_at: None,
            lease_owner: None,
            lease_expires_at: None,
            last_error: error.map(str::to_owned),
            ordering_key: None,
            created_at: 0,
            updated_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn list_defaults_to_fifty_and_parses_every_filter() {
        let command = parse_dlq(&[
            "list",
            "--destination",
            "dst_a",
            "--subscription",
            "sub_b",
            "--event-type",
            "order.created",
            "--since",
            "2025-01-01T00:00:00Z",
            "--until",
            "2025-01-02T00:00:00+01:00",
        ])
        .expect("valid");
        let DlqCommand::List { filter, limit, json } = command else { panic!("{command:?}") };
        assert_eq!((limit, json), (50, false));
        let filter = filter.into_filter().expect("consistent");
        assert_eq!(filter.status, Some(DeliveryStatus::Dead));
        assert_eq!(filter.destination_id.as_ref().map(DestinationId::as_str), Some("dst_a"));
        assert_eq!(filter.subscription_id.as_ref().map(SubscriptionId::as_str), Some("sub_b"));
        assert_eq!(filter.event_type.as_ref().map(EventType::as_str), Some("order.created"));
        assert_eq!(filter.since, Some(1_735_689_600_000));
        assert_eq!(filter.until, Some(1_735_772_400_000));
    }

    #[test]
    fn the_limit_is_bounded() {
        for bad in ["0", "1001", "-1", "many"] {
            let err = parse_dlq(&["list", &format!("--limit={bad}")]).expect_err(bad);
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
        assert!(matches!(parse_dlq(&["list", "--limit", "1000"]), Ok(DlqCommand::List { limit: 1000, .. })));
    }

    #[test]
    fn bad_filters_are_usage_errors_that_say_why() {
        let err = parse_dlq(&["replay", "--since", "yesterday"]).expect_err("bad instant");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let err = parse_dlq(&["list", "--event-type", "Order Created"]).expect_err("bad type");
        assert!(err.to_string().contains("lowercase"), "{err}");
        let command =
            parse_dlq(&["replay", "--since", "2025-01-02T00:00:00Z", "--until", "2025-01-01T00:00:00Z"])
                .expect("each flag is valid");
        let DlqCommand::Replay { filter, yes: false } = command else { panic!("{command:?}") };
        let failure = filter.into_filter().expect_err("an empty range");
        assert!(matches!(failure, Failure::Usage(_)), "{failure:?}");
        assert_eq!(failure.exit_code(), std::process::ExitCode::from(2));
    }

    #[test]
    fn replay_takes_yes_in_both_spellings() {
        for flag in ["--yes", "-y"] {
            assert!(matches!(parse_dlq(&["replay", flag]), Ok(DlqCommand::Replay { yes: true, .. })));
        }
    }

    #[test]
    fn the_table_cuts_long_errors_to_one_short_line() {
        let long = format!("HTTP 422: {}\nsecond line", "x".repeat(100));
        let table = render_dead_table(&[dead("dlv_1", Some(&long)), dead("dlv_2", None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("ID") && lines[0].ends_with("UPDATED"), "{table}");
        let error_column = lines[0].find("LAST_ERROR").expect("LAST_ERROR header");
        let cell: String = lines[1].chars().skip(error_column).take(ERROR_CELL_CHARS).collect();
        assert!(cell.starts_with("HTTP 422: xxx") && cell.ends_with('…'), "{cell:?}");
        assert!(!table.contains("second line"));
        assert_eq!(&lines[2][error_column..error_column + 1], "-", "{table}");
        assert!(lines[1].contains("evt-1") && lines[1].contains("dst_1") && lines[1].contains("12"));
        assert!(lines[1].ends_with("2023-11-14T22:13:20.000Z"), "{table}");
    }

    #[test]
    fn one_line_keeps_short_text_and_flattens_control_characters() {
        assert_eq!(one_line("a\tb\nc", 60), "a b c");
        assert_eq!(one_line("abcdef", 4), "abc…");
        assert_eq!(one_line("abcd", 4), "abcd");
    }
}
