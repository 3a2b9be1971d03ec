//! Phase c: a SQLite node whose disk fills up. Its database lives on a small tmpfs; 2 KB events
//! go in until writes fail, the disk stays full a while, then it is grown in place and the same
//! process must take events again. Needs root for the mount; unmounted whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::publisher::{Events, Publisher};
use super::server::{Server, soak_env};
use super::sink::FlakySink;
use super::{Figures, SoakOptions};
use crate::node;

pub const SKIPPED: &str = "\n!!! The full-disk phase was SKIPPED: it mounts a tmpfs, which needs root \
                           (run the soak as root to include it). !!!\n";

/// The tmpfs while it fills, and after it is grown.
const SMALL: &str = "size=8m";
const LARGE: &str = "size=64m";

/// `None` when the phase cannot run here (not root, or the mount is refused).
pub async fn run(options: &SoakOptions, full_for: Duration) -> anyhow::Result<Option<Figures>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let started = Instant::now();
    let logs = super::work_dir("disk-logs")?;
    let dir = super::work_dir("disk")?;
    let mount = match Tmpfs::mount(dir.path()) {
        Ok(mount) => mount,
        Err(error) => {
            eprintln!("mounting a tmpfs on {} failed: {error:#}", dir.path().display());
            return Ok(None);
        }
    };
    println!("full disk: SQLite on an 8 MiB tmpfs ({}), 2 KB events until it is full", dir.path().display());
    let database = dir.path().join("switchyard.db");
    let url = format!("sqlite://{}", database.display());
    let mut server =
        Server::new(&options.binary, &url, soak_env(), dir.path(), &logs.path().join("server.log"))?;
    let token = server.admin_token()?;
    server.start().await?;
    let sink = FlakySink::start(0.0)?;
    node::subscribe_with(server.addr, &token, "sink", super::sink_destination(&sink), "#").await?;
    let publisher = Publisher::start(&[server.addr], &token, Events { prefix: "disk", padding: 2_048 }, 2);

    let filling = Instant::now();
    while publisher.answers().unavailable == 0 {
        if filling.elapsed() > Duration::from_secs(120) {
            bail!("8 MiB did not fill within 2 minutes: {}", publisher.answers());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let full_after = filling.elapsed();
    let acknowledged_when_full = publisher.acknowledged_count();
    let full_at = Instant::now();
    let mut readiness_while_full = Vec::new();
    while full_at.elapsed() < full_for {
        readiness_while_full.push(super::readiness(server.addr).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let integrity_while_full = super::integrity_check(&database).await?;
    let acknowledged_while_full = publisher.acknowledged_count() - acknowledged_when_full;

    mount.resize(LARGE)?;
    let grown_at = Instant::now();
    let acknowledged_at_growth = publisher.acknowledged_count();
    let mut recovered_after = None;
    while grown_at.elapsed() < Duration::from_secs(60) {
        if publisher.acknowledged_count() > acknowledged_at_growth
            && super::readiness(server.addr).await == Some(200)
        {
            recovered_after = Some(grown_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (acknowledged, answers) = publisher.stop().await;
    super::wait_for_delivery(&sink, &acknowledged, options.delivery_timeout).await;

    let stored = super::stored_event_ids(&database).await?;
    let not_stored = acknowledged.iter().filter(|id| !stored.contains(*id)).count();
    let still_running = server.is_running();
    server.kill()?;
    let mut figures = super::tally("full disk (SQLite on tmpfs)", &sink, &acknowledged, answers, started);
    figures.integrity = Some(super::integrity_check(&database).await?);
    let unready = readiness_while_full.iter().filter(|r| **r == Some(503)).count();
    figures.notes.push(format!(
        "full after {:.1} s and {acknowledged_when_full} events; full for {:.0} s, during which {} \
         publishes were acknowledged",
        full_after.as_secs_f64(),
        full_for.as_secs_f64(),
        acknowledged_while_full
    ));
    figures.notes.push(format!(
        "readiness while full: {unready} of {} probes answered 503 ({})",
        readiness_while_full.len(),
        describe(&readiness_while_full)
    ));
    figures.notes.push(format!("integrity_check while full: {integrity_while_full}"));
    match recovered_after {
        Some(after) => figures.notes.push(format!(
            "grown to 64 MiB: acknowledging and ready again {:.2} s later, without a restart",
            after.as_secs_f64()
        )),
        None => figures.notes.push("grown to 64 MiB: not recovered within 60 s".into()),
    }
    figures.checks.push((
        "publishes were refused with 503 unavailable once full".into(),
        figures.answers.unavailable > 0,
    ));
    figures.checks.push((
        "every refusal was a 503 unavailable envelope with Retry-After".into(),
        figures.answers.refusals_well_formed(),
    ));
    figures.checks.push((
        format!("every acknowledged event is in the database ({not_stored} missing)"),
        not_stored == 0,
    ));
    figures.checks.push(("readiness answered 503 while the disk was full".into(), unready > 0));
    figures.checks.push((
        "writes recovered once the disk grew, same process".into(),
        recovered_after.is_some() && still_running,
    ));
    figures.checks.push(("integrity_check ok while full".into(), integrity_while_full == "ok"));
    drop(mount);
    Ok(Some(figures))
}

/// Readiness answers in order, runs of the same answer folded: "503 ×12, 200 ×3".
fn describe(answers: &[Option<u16>]) -> String {
    let mut runs: Vec<(Option<u16>, usize)> = Vec::new();
    for answer in answers {
        match runs.last_mut() {
            Some((last, n)) if last == answer => *n += 1,
            _ => runs.push((*answer, 1)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(answer, n)| format!("{} ×{n}", answer.map_or("no answer".to_owned(), |s| s.to_string())))
        .collect();
    runs.join(", ")
}

/// A tmpfs mounted on a directory until dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> anyhow::Result<Tmpfs> {
        let options = format!("{SMALL},mode=0700");
        mount(Command::new("mount").args(["-t", "tmpfs", "-o", &options, "tmpfs"]).arg(path))?;
        Ok(Tmpfs { path: path.to_owned() })
    }

    /// Grows (or shrinks) it in place: what is on it stays, open files stay open.
    fn resize(&self, size: &str) -> anyhow::Result<()> {
        mount(Command::new("mount").args(["-o", &format!("remount,{size}")]).arg(&self.path))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, should anything still hold a file there: the mount goes either way.
        if mount(Command::new("umount").arg(&self.path)).is_err() {
            let _ = mount(Command::new("umount").arg("-l").arg(&self.path));
        }
    }
}

fn mount(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output()?;
    if !output.status.success() {
        bail!("{command:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_answers_are_folded_into_runs() {
        let answers = [Some(200), Some(503), Some(503), None, Some(200)];
        assert_eq!(describe(&answers), "200 ×1, 503 ×2, no answer ×1, 200 ×1");
    }
}
