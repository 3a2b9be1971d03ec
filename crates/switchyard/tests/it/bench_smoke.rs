//! The load harness in its smoke mode, run with the suite so that it cannot rot: every scenario
//! completes against the real binary, the sink counts every delivery, and the report has the
//! server's CPU time and, end to end, each delivery's latency from its event's send.

use std::time::Duration;

use switchyard_bench::{Options, Scenario, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_completes_every_scenario_and_counts_every_delivery() {
    let options = Options::smoke(env!("CARGO_BIN_EXE_switchyard").into());
    let reports = run_all(&Scenario::ALL, &options, |_| {}).await.expect("every scenario completes");

    let names: Vec<&str> = reports.iter().map(|r| r.scenario.name()).collect();
    assert_eq!(names, ["ingest", "ingest-batch", "e2e", "fanout", "backlog", "relay"]);
    for report in &reports {
        let name = report.scenario.name();
        assert!(report.measured.requests > 0 && report.ceiling.requests > 0, "{name}: no load ran");
        assert_eq!(report.measured.errors, 0, "{name}");
        assert!(report.peak_rss > 0, "{name}: the server's memory was not read");
        assert!(report.cpu.server > Duration::ZERO, "{name}: the server's CPU time was not read");
        assert!(report.to_string().contains("µs/event"), "{name}: no CPU per event in\n{report}");
    }
    // The bare server runs for well under a second a scenario: its threads' CPU time, counted
    // in clock ticks, shows over the five that have one (relay's ceiling is the harness's own).
    let bare_cpu: Duration = reports.iter().map(|r| r.cpu.bare_server).sum();
    assert!(bare_cpu > Duration::ZERO, "the bare server's CPU time was not read");
    for report in &reports[2..] {
        let delivered = report.delivered.expect("a delivery scenario counts deliveries");
        assert!(delivered.expected > 0, "{}: nothing to deliver", report.scenario.name());
        assert_eq!(delivered.counted, delivered.expected, "{}", report.scenario.name());
    }
    for report in &reports[2..4] {
        let name = report.scenario.name();
        let latency = report.delivery_latency.as_ref().expect("e2e and fanout time their deliveries");
        assert_eq!(latency.len() as u64, report.delivered.unwrap().expected, "{name}: every delivery timed");
        assert!(latency.ms(0.5) > 0.0, "{name}");
        assert!(report.to_string().contains("publish → delivered"), "{name}: no latency in\n{report}");
    }
    let fanout = &reports[3];
    assert_eq!(fanout.delivered.unwrap().expected, fanout.measured.requests * 10, "ten deliveries an event");
    let backlog = reports[4].delivered.unwrap();
    assert_eq!(backlog.expected, options.backlog, "the whole backlog drained");
    let relay = &reports[5];
    assert_eq!(relay.delivered.unwrap().expected, options.rows, "every outbox row relayed");
    assert_eq!(relay.ceiling.requests, options.rows, "the bare relay sent every row");
    assert!(relay.to_string().contains("× the bare relay"), "no comparison in\n{relay}");
}
