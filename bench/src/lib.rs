//! The load harness of Switchyard: drives the real binary over loopback and reports
//! throughput, latency, CPU time and memory next to a bare server measured in the same run.

pub mod brokers;
pub mod cpu;
pub mod latency;
pub mod load;
pub mod node;
pub mod outbox;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod soak;

pub use report::Report;
pub use scenarios::{Ids, Kind, Options, Scenario, Source};

/// Runs `scenarios` one after the other, each on a fresh server, handing each report to
/// `on_report` as it comes; fails on the first that is incomplete (a failed request, a
/// delivery the sink did not count), and before any runs if one cannot take `options`.
pub async fn run_all(
    scenarios: &[Scenario],
    options: &Options,
    mut on_report: impl FnMut(&Report),
) -> anyhow::Result<Vec<Report>> {
    scenarios::check(scenarios, options)?;
    let mut reports = Vec::with_capacity(scenarios.len());
    for scenario in scenarios {
        let report = scenarios::run(*scenario, options).await?;
        on_report(&report);
        report.check()?;
        reports.push(report);
    }
    Ok(reports)
}
