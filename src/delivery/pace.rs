//! `rate_limit_per_s`: requests spaced so that a destination never gets more than its
//! rate in any second, with a small burst (a tenth of a second's worth) allowed.
//! The generic cell rate algorithm: one theoretical arrival time, no bucket to refill.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Pace {
    interval: Duration,
    /// How far ahead of the schedule requests may run.
    burst: Duration,
    /// When the next request is due on the schedule.
    due: Option<Instant>,
}

impl Pace {
    /// `None` for 0 (no limit).
    pub fn new(per_s: u32) -> Option<Pace> {
        (per_s > 0).then(|| {
            let interval = Duration::from_secs(1) / per_s;
            Pace {
                interval,
                burst: interval * (per_s / 10).saturating_sub(1),
                due: None,
            }
        })
    }

    /// Takes a request's place at `now`, or says when one is free.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        let due = self.due.unwrap_or(now).max(now);
        let earliest = due.checked_sub(self.burst).unwrap_or(now);
        if now < earliest {
            return Err(earliest);
        }
        self.due = Some(due + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests taken as fast as allowed over `seconds` of simulated time.
    fn taken_in(per_s: u32, seconds: u64) -> usize {
        let mut pace = Pace::new(per_s).unwrap();
        let start = Instant::now();
        let end = start + Duration::from_secs(seconds);
        let (mut now, mut taken) = (start, 0);
        while now < end {
            match pace.take(now) {
                Ok(()) => taken += 1,
                Err(at) => now = at,
            }
        }
        taken
    }

    #[test]
    fn the_rate_holds_over_time_with_a_tenth_of_a_second_of_burst() {
        assert_eq!(taken_in(50, 10), 500 + 4);
        assert_eq!(taken_in(1, 10), 10);
        let thousand = taken_in(1000, 2);
        assert!((2000..=2100).contains(&thousand), "{thousand}");
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(Pace::new(0).is_none());
    }
}
