//! What processes use, read from Linux's `/proc`: CPU time and resident
//! memory, of the load generator itself and of the servers it drives (given
//! their pids), so a report can say what a figure cost and who was busy.

use serde::Serialize;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`): 100 on every Linux
/// the project runs on, and not readable without `sysconf`.
const TICKS_PER_SECOND: f64 = 100.0;

/// The resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU seconds a process has used (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name in parentheses may hold spaces; the fields after it are
    // state (3rd), ..., utime (14th), stime (15th).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// CPU seconds used during one phase of a run.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub struct CpuUse {
    /// By the server processes given with `--cpu-pids` (all together), if any.
    pub server_seconds: Option<f64>,
    /// By this load generator.
    pub loadtest_seconds: Option<f64>,
}

/// CPU times at the start of a phase.
pub struct CpuClock {
    pids: Vec<u32>,
    server: Option<f64>,
    loadtest: Option<f64>,
}

/// The CPU seconds of all of `pids` together; `None` if there are none or
/// one cannot be read.
fn sum(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(Some(pid))).sum()
}

impl CpuClock {
    /// Starts measuring this process and `pids`.
    pub fn start(pids: &[u32]) -> Self {
        Self {
            pids: pids.to_vec(),
            server: sum(pids),
            loadtest: cpu_seconds(None),
        }
    }

    /// What was used since [`CpuClock::start`].
    pub fn stop(&self) -> CpuUse {
        // To the tick: the subtraction would otherwise show float noise.
        let since = |before: Option<f64>, now: Option<f64>| {
            Some(((now? - before?) * TICKS_PER_SECOND).round() / TICKS_PER_SECOND)
        };
        CpuUse {
            server_seconds: since(self.server, sum(&self.pids)),
            loadtest_seconds: since(self.loadtest, cpu_seconds(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time_and_a_resident_set() {
        let clock = CpuClock::start(&[std::process::id()]);
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let used = clock.stop();
        assert!(used.loadtest_seconds.is_some_and(|s| s >= 0.0));
        assert!(used.server_seconds.is_some_and(|s| s >= 0.0));
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(CpuClock::start(&[]).stop().server_seconds, None);
    }
}
