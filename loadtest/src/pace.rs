//! A steady sender's schedule: one send every `period`, the first after a
//! given offset (so that users do not send in lockstep), none after the
//! deadline; between sends the sender listens.

use std::time::{Duration, Instant};

/// The longest a sender listens before it looks at the clock again.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// When the next send is due.
pub struct Pace {
    next: Instant,
    period: Duration,
    deadline: Instant,
}

impl Pace {
    /// Sends every `period` from `first` from now until `deadline`.
    pub fn new(first: Duration, period: Duration, deadline: Instant) -> Self {
        Self {
            next: Instant::now() + first,
            period,
            deadline,
        }
    }

    /// Whether a send is due now; if so, the one after is scheduled.
    pub fn take_due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next && now < self.deadline {
            self.next += self.period;
            return true;
        }
        false
    }

    /// How long to listen before looking again (1 ms to 500 ms).
    pub fn wait(&self) -> Duration {
        self.next
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), MAX_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_are_due_once_per_period_until_the_deadline() {
        let mut pace = Pace::new(
            Duration::ZERO,
            Duration::from_secs(3600),
            Instant::now() + Duration::from_secs(60),
        );
        assert!(pace.take_due(), "the first is due at once");
        assert!(!pace.take_due(), "the next only after a period");
        assert!(pace.wait() <= MAX_WAIT && pace.wait() >= Duration::from_millis(1));
        let mut over = Pace::new(Duration::ZERO, Duration::from_millis(1), Instant::now());
        assert!(!over.take_due(), "nothing after the deadline");
    }
}
