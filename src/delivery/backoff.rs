//! When to retry: exponential backoff with full jitter, `Retry-After`, and the retry window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

/// The delay before retry number `retry` (1 for the first retry): a uniformly random
/// duration between zero and `initial * 2^(retry-1)`, capped at `max` ("full jitter", which
/// spreads out the retries of many deliveries that failed together).
pub fn jittered_delay(
    retry: u32,
    initial: Duration,
    max: Duration,
    rng: &mut impl Rng,
) -> Duration {
    let ceiling = exponential_ceiling(retry, initial, max);
    let ms = rng.random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(ms)
}

/// `initial * 2^(retry-1)`, capped at `max`.
pub fn exponential_ceiling(retry: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// The delay a receiver asked for in `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The delay before the next try: the jittered backoff, raised to what the receiver asked
/// for, and never beyond `max`.
pub fn next_delay(
    retry: u32,
    retry_after: Option<Duration>,
    initial: Duration,
    max: Duration,
    rng: &mut impl Rng,
) -> Duration {
    let delay = jittered_delay(retry, initial, max, rng);
    retry_after.map_or(delay, |asked| delay.max(asked)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_ceiling_doubles_and_stops_at_the_cap() {
        let cap = Duration::from_secs(600);
        let ceilings: Vec<u64> = (1..=12)
            .map(|n| exponential_ceiling(n, S, cap).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(exponential_ceiling(200, S, cap), cap);
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_spreads() {
        let mut rng = rand::rng();
        let delays: Vec<Duration> = (0..200)
            .map(|_| jittered_delay(4, S, Duration::from_secs(600), &mut rng))
            .collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 50, "full jitter spreads retries");
    }

    #[test]
    fn retry_after_raises_the_delay_but_not_past_the_cap() {
        let mut rng = rand::rng();
        let cap = Duration::from_secs(60);
        let d = next_delay(
            1,
            Some(Duration::from_secs(30)),
            Duration::from_millis(10),
            cap,
            &mut rng,
        );
        assert_eq!(d, Duration::from_secs(30));
        let d = next_delay(
            1,
            Some(Duration::from_secs(3600)),
            Duration::from_millis(10),
            cap,
            &mut rng,
        );
        assert_eq!(d, cap);
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
