//! Latency samples and their percentiles.

use serde::Serialize;

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Latencies {
    samples: Vec<u64>,
}

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Latencies {
    /// Adds one sample.
    pub fn record(&mut self, micros: u64) {
        self.samples.push(micros);
    }

    /// Merges another set in.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// The percentiles (sorts the samples).
    pub fn percentiles(&mut self) -> Percentiles {
        if self.samples.is_empty() {
            return Percentiles::default();
        }
        self.samples.sort_unstable();
        let n = self.samples.len();
        let at = |q: f64| {
            let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            self.samples[index] as f64 / 1000.0
        };
        Percentiles {
            count: n as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: self.samples[n - 1] as f64 / 1000.0,
        }
    }
}

/// Waits for every task and merges the latencies they recorded.
pub async fn join_latencies(
    tasks: Vec<tokio::task::JoinHandle<Latencies>>,
) -> Result<Latencies, tokio::task::JoinError> {
    let mut all = Latencies::default();
    for task in tasks {
        all.merge(task.await?);
    }
    Ok(all)
}

/// Microseconds since the Unix epoch (the clock every client of one machine shares).
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut l = Latencies::default();
        for v in 1..=1000 {
            l.record(v * 1000);
        }
        let p = l.percentiles();
        assert_eq!(p.count, 1000);
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
        assert_eq!(Latencies::default().percentiles().count, 0);
    }
}
