//! Phase a: `kill -9` of a SQLite node, again and again, while it takes events and delivers them
//! to a receiver that fails a fifth of them; each time it starts again on the same file.

use std::time::{Duration, Instant};

use rand::Rng;

use super::publisher::{Events, Publisher};
use super::server::{Server, soak_env};
use super::sink::FlakySink;
use super::{Figures, SoakOptions};
use crate::node;

/// The share of deliveries the receiver answers with a 500.
const SINK_FAILURE_RATE: f64 = 0.2;

pub async fn run(options: &SoakOptions) -> anyhow::Result<Figures> {
    let started = Instant::now();
    println!(
        "kill -9: {} cycles on SQLite, the sink failing {:.0} %",
        options.cycles,
        SINK_FAILURE_RATE * 100.0
    );
    let dir = super::work_dir("crash")?;
    let database = dir.path().join("switchyard.db");
    let url = format!("sqlite://{}", database.display());
    let mut server =
        Server::new(&options.binary, &url, soak_env(), dir.path(), &dir.path().join("server.log"))?;
    let token = server.admin_token()?;
    server.start().await?;
    let sink = FlakySink::start(SINK_FAILURE_RATE)?;
    node::subscribe_with(server.addr, &token, "sink", super::sink_destination(&sink), "#").await?;

    let events = Events { prefix: "crash", padding: 200 };
    let publisher = Publisher::start(&[server.addr], &token, events, options.connections);
    for cycle in 1..=options.cycles {
        // Long enough for a restarted node to take events and to run the deliveries its
        // predecessor left leased, short enough that the kills land amid both.
        let running = Duration::from_millis(rand::rng().random_range(1_500..4_000));
        tokio::time::sleep(running).await;
        server.kill()?;
        let down = Duration::from_millis(rand::rng().random_range(0..500));
        tokio::time::sleep(down).await;
        server.start().await?;
        println!(
            "  cycle {cycle}/{}: killed after {:.1} s; {} acknowledged, {} delivered so far",
            options.cycles,
            running.as_secs_f64(),
            publisher.acknowledged_count(),
            sink.record.delivered()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acknowledged, answers) = publisher.stop().await;
    super::wait_for_delivery(&sink, &acknowledged, options.delivery_timeout).await;

    let dead = super::deliveries_in(server.addr, &token, "dead").await?;
    server.kill()?;
    let mut figures = super::tally("kill -9 (SQLite)", &sink, &acknowledged, answers, started);
    figures.integrity = Some(super::integrity_check(&database).await?);
    figures.notes.push(format!("{} kills; dead deliveries at the end: {dead}", options.cycles));
    Ok(figures)
}
