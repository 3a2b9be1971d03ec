//! CPU time as Linux counts it in `/proc`: of the server under test (a child process), of
//! the bare server's threads (inside this process, told apart by their thread name), and of
//! the whole machine, which says whether a run was bound by its cores or by waiting.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

/// User plus system CPU time of process `pid`, all its threads, past and present.
pub fn of_process(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let (_, ticks) = parse_stat(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks_to_duration(ticks))
}

/// User plus system CPU time of this process's live threads named `name` (as `comm`, which
/// the kernel cuts to 15 bytes).
pub fn of_threads_named(name: &str) -> anyhow::Result<Duration> {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let path = task?.path().join("stat");
        // A thread that ended since the listing has no stat any more: it is not one of ours,
        // which live as long as their server.
        let Ok(stat) = std::fs::read_to_string(&path) else { continue };
        let (comm, used) = parse_stat(&stat).with_context(|| format!("parsing {}", path.display()))?;
        if comm == name {
            ticks += used;
        }
    }
    Ok(ticks_to_duration(ticks))
}

/// The command name and `utime + stime` (fields 14 and 15, clock ticks) of a `stat` line. The
/// name is in parentheses and may itself hold spaces and parentheses, so the fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After the name come field 3 (state) onwards: utime is the 12th of them, stime the 13th.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The machine's CPU time since boot, all CPUs together, in clock ticks (the `cpu` line of
/// `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// Idle, waiting for I/O included: time nothing wanted to run.
    idle: u64,
    /// Every state: user, nice, system, idle, iowait, irq, softirq, steal.
    total: u64,
}

impl MachineTicks {
    /// The machine's ticks now.
    pub fn now() -> anyhow::Result<MachineTicks> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_machine(&stat).context("parsing the cpu line of /proc/stat")
    }

    /// The share of the CPUs' time from `self` to `later` that was idle, `None` when no tick
    /// passed between them.
    pub fn idle_share_until(self, later: MachineTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|&total| total > 0)?;
        let idle = later.idle.saturating_sub(self.idle).min(total);
        Some(idle as f64 / total as f64)
    }
}

/// The first line of `/proc/stat`: `cpu` then user, nice, system, idle, iowait, irq, softirq,
/// steal, guest and guest_nice ticks. Guest time is counted in user and nice already, so it is
/// left out of the total; kernels older than the later fields give fewer of them.
fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    if ticks.len() < 4 {
        return None;
    }
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    Some(MachineTicks { idle, total: ticks.iter().sum() })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    static PER_SECOND: OnceLock<u64> = OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(|| rustix::param::clock_ticks_per_second().max(1));
    Duration::from_micros(ticks.saturating_mul(1_000_000) / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_counts_fields_from_the_last_parenthesis() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    150 37 0 0 20 0 5 0 123 4096 512 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("a (b) c", 187)));
    }

    #[test]
    fn the_machine_idles_for_its_idle_and_iowait_ticks_out_of_all_but_guest_time() {
        let before = parse_machine("cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3 4\n").expect("parsed");
        let after = parse_machine("cpu  400 0 150 1000 100 0 0 0 90 0\n").expect("parsed");
        assert_eq!(before, MachineTicks { idle: 850, total: 1000 });
        // 650 ticks passed, 250 of them idle or waiting for I/O.
        let share = before.idle_share_until(after).expect("ticks passed");
        assert!((share - 250.0 / 650.0).abs() < 1e-9, "{share}");
        assert_eq!(after.idle_share_until(after), None, "no tick passed");
    }

    #[test]
    fn a_stat_without_a_cpu_line_first_is_refused() {
        assert_eq!(parse_machine("intr 1 2 3\n"), None);
        assert_eq!(parse_machine("cpu 1 2\n"), None);
    }

    #[test]
    fn the_machine_ticks_are_read() {
        let now = MachineTicks::now().expect("/proc/stat is read");
        assert!(now.total >= now.idle && now.total > 0, "{now:?}");
    }

    #[test]
    fn parse_stat_rejects_a_truncated_line() {
        assert_eq!(parse_stat("4242 (switchyard) S 1 4242"), None);
    }

    #[test]
    fn this_process_and_its_named_threads_have_used_cpu() {
        let spin = std::thread::Builder::new()
            .name("cpu-test-spin".to_owned())
            .spawn(|| {
                // Spins until its own count shows 20 ms, however busy the machine is.
                let started = std::time::Instant::now();
                let mut x = 0u64;
                while started.elapsed() < Duration::from_secs(20) {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    let used = of_threads_named("cpu-test-spin")?;
                    if used >= Duration::from_millis(20) {
                        return Ok(used);
                    }
                }
                anyhow::bail!("the spinning thread's CPU time never reached 20 ms")
            })
            .expect("a thread");
        let spun = spin.join().expect("the thread ends").expect("its CPU time is read");
        let whole = of_process(std::process::id()).expect("this process's stat is read");
        assert!(whole >= spun, "{whole:?} < {spun:?}");
        assert_eq!(of_threads_named("no-such-thread").expect("the tasks are listed"), Duration::ZERO);
    }
}
