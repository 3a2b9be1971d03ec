//! The load harness in its smoke mode, run with the suite so that it cannot rot: every scenario
//! completes against the real binary, and the sink counts every delivery.

use switchyard_bench::{Options, Scenario, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_completes_every_scenario_and_counts_every_delivery() {
    let options = Options::smoke(env!("CARGO_BIN_EXE_switchyard").into());
    let reports = run_all(&Scenario::ALL, &options, |_| {}).await.expect("every scenario completes");

    let names: Vec<&str> = reports.iter().map(|r| r.scenario.name()).collect();
    assert_eq!(names, ["ingest", "ingest-batch", "e2e", "fanout", "backlog"]);
    for report in &reports {
        let name = report.scenario.name();
        assert!(report.measured.requests > 0 && report.ceiling.requests > 0, "{name}: no load ran");
        assert_eq!(report.measured.errors, 0, "{name}");
        assert!(report.peak_rss > 0, "{name}: the server's memory was not read");
    }
    for report in &reports[2..] {
        let delivered = report.delivered.expect("a delivery scenario counts deliveries");
        assert!(delivered.expected > 0, "{}: nothing to deliver", report.scenario.name());
        assert_eq!(delivered.counted, delivered.expected, "{}", report.scenario.name());
    }
    let fanout = &reports[3];
    assert_eq!(fanout.delivered.unwrap().expected, fanout.measured.requests * 10, "ten deliveries an event");
    let backlog = reports[4].delivered.unwrap();
    assert_eq!(backlog.expected, options.backlog, "the whole backlog drained");
}
