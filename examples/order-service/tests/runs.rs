//! The example, run as its readers run it: the built program with the built `switchyard`
//! beside it, end to end over loopback.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The example waits at most 30 s for the delivery; starting and stopping take a few more.
const DEADLINE: Duration = Duration::from_secs(120);

/// The `switchyard` binary of the same build: `cargo nextest run --workspace` builds every
/// binary of the workspace into the same directory as this package's.
fn switchyard_binary() -> Option<PathBuf> {
    let example = PathBuf::from(env!("CARGO_BIN_EXE_switchyard-example-order-service"));
    let binary = example.with_file_name(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
    binary.is_file().then_some(binary)
}

#[test]
fn the_example_relays_an_order_event_from_its_outbox_to_the_receiver() {
    let Some(switchyard) = switchyard_binary() else {
        let message = "the switchyard binary is not built beside the example: \
                       run `cargo build -p switchyard` first (or test the whole workspace)";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED the_example_relays_an_order_event_from_its_outbox_to_the_receiver: {message}");
        return;
    };
    // Files, not pipes: reading a pipe to its end would wait for any process still holding it.
    let stdout = tempfile::NamedTempFile::new().expect("a file");
    let stderr = tempfile::NamedTempFile::new().expect("a file");
    let mut example = Command::new(env!("CARGO_BIN_EXE_switchyard-example-order-service"))
        .env("SWITCHYARD_BIN", &switchyard)
        .stdout(Stdio::from(stdout.reopen().expect("reopened")))
        .stderr(Stdio::from(stderr.reopen().expect("reopened")))
        .spawn()
        .expect("the example starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = example.try_wait().expect("the example is waited for") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = example.kill();
            let _ = example.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(stdout.path()).expect("its output");
    let stderr = std::fs::read_to_string(stderr.path()).expect("its errors");
    let Some(status) = status else {
        panic!("the example did not finish within {DEADLINE:?}\n{stdout}\n{stderr}");
    };
    assert!(status.success(), "the example failed ({status})\n{stdout}\n{stderr}");

    // The event id the service wrote into its outbox is the one the receiver got.
    let event_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("delivered event "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `delivered event` line in\n{stdout}"));
    assert!(stdout.contains(&format!("its event {event_id} is in the outbox")), "{stdout}");
    assert!(stdout.contains(&format!("X-Event-ID:   {event_id}")), "{stdout}");
    assert!(stdout.contains("X-Event-Type: order.created"), "{stdout}");
    assert!(stdout.contains("the outbox is empty"), "{stdout}");
}
