//! What an attempt's results mean for its delivery (SPEC §4): delivered, retried later on
//! the URLs still worth it, or dead-lettered. A pure function of the results, the
//! delivery's history and the retry settings; the delivery actor only carries it out.

use std::time::Duration;

use rand::Rng;

use super::backoff::next_delay;
use super::outcome::UrlOutcome;
use crate::store::DeliveryUpdate;

/// How one URL's request went, as far as the decision cares.
#[derive(Debug, Clone)]
pub struct UrlVerdict {
    pub url: String,
    pub outcome: UrlOutcome,
    /// What the receiver asked for in `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The retry settings of `[delivery]`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Retries go on this long after the first attempt.
    pub window: Duration,
}

/// A delivery's state before this attempt.
#[derive(Debug, Clone)]
pub struct History<'a> {
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the first attempt was made (this one, if it was the first).
    pub first_attempt_at_ms: i64,
    /// URLs given up on by earlier attempts.
    pub given_up_urls: &'a [String],
}

/// Decides the delivery's fate after an attempt at `now_ms` to `urls` (the destination's
/// URLs now, less those gone) gave `verdicts`.
pub fn decide(
    policy: &RetryPolicy,
    history: &History<'_>,
    urls: &[String],
    verdicts: &[UrlVerdict],
    now_ms: i64,
    rng: &mut impl Rng,
) -> DeliveryUpdate {
    if verdicts.iter().any(|v| v.outcome == UrlOutcome::Success) {
        return DeliveryUpdate::Delivered;
    }
    if urls.is_empty() {
        // Every URL is gone and the destination disabled: the delivery waits for a resume
        // or a reload, not dead-lettered for its receiver's state.
        return DeliveryUpdate::RetryAt {
            at_ms: now_ms,
            given_up_urls: history.given_up_urls.to_vec(),
        };
    }
    let mut given_up: Vec<String> = history.given_up_urls.to_vec();
    for v in verdicts
        .iter()
        .filter(|v| v.outcome == UrlOutcome::Permanent)
    {
        if !given_up.contains(&v.url) {
            given_up.push(v.url.clone());
        }
    }
    let last_error = verdicts
        .iter()
        .rev()
        .find_map(|v| v.error.clone())
        .unwrap_or_default();
    if urls.iter().all(|u| given_up.contains(u)) {
        return DeliveryUpdate::Dead {
            reason: format!("no URL worth retrying; last error: {last_error}"),
        };
    }
    let attempts = history.attempts + 1;
    let window_ends = history
        .first_attempt_at_ms
        .saturating_add(i64::try_from(policy.window.as_millis()).unwrap_or(i64::MAX));
    if now_ms >= window_ends {
        return DeliveryUpdate::Dead {
            reason: format!(
                "retry window of {} s over after {attempts} attempts; last error: {last_error}",
                policy.window.as_secs()
            ),
        };
    }
    let retry_after = verdicts.iter().filter_map(|v| v.retry_after).max();
    let delay = next_delay(
        attempts,
        retry_after,
        policy.backoff_initial,
        policy.backoff_max,
        rng,
    );
    let at_ms = now_ms.saturating_add(delay.as_millis() as i64);
    DeliveryUpdate::RetryAt {
        // A delay past the window's end becomes one last try at its end.
        at_ms: at_ms.min(window_ends),
        given_up_urls: given_up,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(600),
        window: Duration::from_secs(30),
    };

    fn verdict(url: &str, outcome: UrlOutcome) -> UrlVerdict {
        UrlVerdict {
            url: url.into(),
            outcome,
            retry_after: None,
            error: Some(format!("{url} failed")),
        }
    }

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| u.to_string()).collect()
    }

    fn history(given_up: &[String]) -> History<'_> {
        History {
            attempts: 0,
            first_attempt_at_ms: 1_000_000,
            given_up_urls: given_up,
        }
    }

    #[test]
    fn any_success_delivers() {
        let update = decide(
            &POLICY,
            &history(&[]),
            &urls(&["a", "b"]),
            &[
                verdict("a", UrlOutcome::Permanent),
                verdict("b", UrlOutcome::Success),
            ],
            1_000_000,
            &mut rand::rng(),
        );
        assert_eq!(update, DeliveryUpdate::Delivered);
    }

    #[test]
    fn permanent_failures_are_given_up_by_value_and_the_rest_retried() {
        let update = decide(
            &POLICY,
            &history(&[]),
            &urls(&["a", "b"]),
            &[
                verdict("a", UrlOutcome::Permanent),
                verdict("b", UrlOutcome::Retryable),
            ],
            1_000_000,
            &mut rand::rng(),
        );
        let DeliveryUpdate::RetryAt {
            at_ms,
            given_up_urls,
        } = update
        else {
            panic!("{update:?}")
        };
        assert_eq!(given_up_urls, ["a"]);
        assert!((1_000_000..=1_001_000).contains(&at_ms));
        // The same URLs reordered by a reload: "a" stays given up, "b" is still tried.
        let given_up = urls(&["a"]);
        let update = decide(
            &POLICY,
            &history(&given_up),
            &urls(&["b", "a"]),
            &[verdict("b", UrlOutcome::Permanent)],
            1_000_500,
            &mut rand::rng(),
        );
        assert!(matches!(update, DeliveryUpdate::Dead { .. }), "{update:?}");
    }

    #[test]
    fn a_url_added_by_a_reload_is_tried() {
        let given_up = urls(&["a"]);
        let update = decide(
            &POLICY,
            &history(&given_up),
            &urls(&["a", "c"]),
            &[],
            1_000_000,
            &mut rand::rng(),
        );
        assert!(
            matches!(update, DeliveryUpdate::RetryAt { .. }),
            "{update:?}"
        );
    }

    #[test]
    fn the_last_retry_is_at_the_window_end_and_then_it_is_dead() {
        let mut late = history(&[]);
        late.attempts = 20; // Backoff far beyond the window.
        let update = decide(
            &POLICY,
            &late,
            &urls(&["a"]),
            &[UrlVerdict {
                retry_after: Some(Duration::from_secs(500)),
                ..verdict("a", UrlOutcome::Retryable)
            }],
            1_024_000,
            &mut rand::rng(),
        );
        assert_eq!(
            update,
            DeliveryUpdate::RetryAt {
                at_ms: 1_030_000,
                given_up_urls: vec![]
            }
        );
        let update = decide(
            &POLICY,
            &late,
            &urls(&["a"]),
            &[verdict("a", UrlOutcome::Retryable)],
            1_030_000,
            &mut rand::rng(),
        );
        let DeliveryUpdate::Dead { reason } = update else {
            panic!("{update:?}")
        };
        assert_eq!(
            reason,
            "retry window of 30 s over after 21 attempts; last error: a failed"
        );
    }
}
