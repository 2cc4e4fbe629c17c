//! Attempts counted per destination and minute (`attempt_counts`), added to as outcomes
//! are recorded (one row write per destination and minute for the outcomes recorded
//! together), so that a destination's attempts of the last hour are read from about sixty
//! rows rather than from every attempt of the hour: that join cost half a second per
//! million attempts, on every metrics scrape and operators' page.

use std::collections::BTreeMap;

use super::AttemptRecord;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// The minute `at_ms` falls in.
pub(super) fn minute_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(MINUTE_MS)
}

/// The first minute counted in "the last hour" at `now_ms`: whole minutes only, so the
/// count covers the last 59 to 60 minutes and never an attempt older than an hour.
pub(super) fn last_hour_from(now_ms: i64) -> i64 {
    minute_of(now_ms - HOUR_MS) + 1
}

/// How many requests were made, and how many of them were answered 2xx.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub attempts: i64,
    pub successes: i64,
}

/// The counts a group of recorded outcomes adds, by (source, destination, minute).
#[derive(Debug, Default)]
pub(super) struct AttemptCounts(BTreeMap<(String, String, i64), Tally>);

impl AttemptCounts {
    /// Counts the requests of one outcome, recorded for `source`'s `destination`.
    pub(super) fn add(&mut self, source: &str, destination: &str, attempts: &[AttemptRecord]) {
        for a in attempts {
            let key = (
                source.to_string(),
                destination.to_string(),
                minute_of(a.attempted_at_ms),
            );
            let tally = self.0.entry(key).or_default();
            tally.attempts += 1;
            tally.successes += i64::from(a.status.is_some_and(|s| (200..300).contains(&s)));
        }
    }

    /// What is added to the row `key` (source, destination, minute).
    pub(super) fn get(&self, key: &(String, String, i64)) -> Option<&Tally> {
        self.0.get(key)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// ((source, destination, minute), what to add), in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&(String, String, i64), &Tally)> {
        self.0.iter()
    }
}

/// After adding `added` to a row and finding it at `total`: whether the row was new,
/// which is when the destination's rows older than the hour are removed (once a minute
/// per destination, so the table holds about an hour of rows per destination).
pub(super) fn started_a_minute(added: &Tally, total: i64) -> bool {
    total == added.attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at_ms: i64, status: Option<u16>) -> AttemptRecord {
        AttemptRecord {
            attempted_at_ms: at_ms,
            url: "http://r/".into(),
            status,
            error: None,
            latency_ms: 1,
            response_body: None,
        }
    }

    #[test]
    fn requests_are_tallied_by_destination_and_minute() {
        let mut counts = AttemptCounts::default();
        counts.add(
            "web",
            "d",
            &[attempt(120_000, Some(200)), attempt(179_999, Some(503))],
        );
        counts.add("web", "d", &[attempt(180_000, None)]);
        counts.add("web", "e", &[attempt(120_001, Some(204))]);
        let tallies: Vec<_> = counts
            .iter()
            .map(|((s, d, m), t)| (s.as_str(), d.as_str(), *m, t.attempts, t.successes))
            .collect();
        assert_eq!(
            tallies,
            [
                ("web", "d", 2, 2, 1),
                ("web", "d", 3, 1, 0),
                ("web", "e", 2, 1, 1)
            ]
        );
    }

    #[test]
    fn the_last_hour_is_whole_minutes_within_it() {
        let now = 10 * HOUR_MS + 30_000;
        let first = last_hour_from(now);
        assert!(first * MINUTE_MS > now - HOUR_MS);
        assert!((first - 1) * MINUTE_MS <= now - HOUR_MS);
        assert_eq!(minute_of(-1), -1);
    }
}
