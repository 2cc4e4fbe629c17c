//! What webhookd makes of a receiver's answers over time (SPEC §11): URLs gone (`410`),
//! probing a receiver that keeps failing, disabling one that has failed for too long, and
//! noticing when it recovers. A pure state machine: the delivery actor feeds it each
//! attempt's summary and carries out the changes it returns (store them, notify).

use std::time::Duration;

use rand::Rng;

use super::backoff::next_delay;
use crate::store::{ControlChange, DestinationControl};

/// Attempts failing in a row after which a destination is probed: one request at a time,
/// spaced out, until one succeeds.
pub const PROBE_AFTER: u32 = 5;
/// The longest wait between two probes.
pub const PROBE_MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Why a destination whose every URL answered `410 Gone` is disabled.
pub const ALL_GONE: &str = "every URL answered 410 Gone";

/// How one attempt went, as far as the receiver's health goes.
#[derive(Debug, Clone, Default)]
pub struct AttemptSummary {
    /// When it started.
    pub at_ms: i64,
    /// When its last answer came.
    pub ended_at_ms: i64,
    /// Some URL answered 2xx.
    pub succeeded: bool,
    /// URLs that answered `410 Gone`.
    pub gone: Vec<String>,
    /// The longest `Retry-After` asked for.
    pub retry_after: Option<Duration>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What the actor is to do about an attempt, besides recording it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthChange {
    /// Keep this in the store.
    Store(ControlChange),
    /// Tell the operator (`[notifications]`).
    Notify(Notice),
}

/// An operational notification about a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Disabled {
        reason: String,
        failing_since_ms: Option<i64>,
    },
    Recovered {
        failing_since_ms: Option<i64>,
    },
}

/// The receiver's health as the delivery actor knows it.
#[derive(Debug, Clone, Default)]
pub struct ReceiverHealth {
    /// Why and since when nothing is sent (until resumed).
    pub disabled: Option<(String, i64)>,
    /// URLs that answered `410 Gone`: never tried again until resumed or reloaded.
    pub gone: Vec<String>,
    /// Since when attempts have failed with no success in between.
    failing_since_ms: Option<i64>,
    /// Whether `failing_since_ms` is in the store (it is stored once probing starts, so
    /// that a receiver failing now and then costs no writes).
    failing_stored: bool,
    consecutive_failures: u32,
    /// While probing: no request before this.
    next_probe_at_ms: Option<i64>,
    /// It was probed or disabled: its next success is news.
    troubled: bool,
    /// Why the latest failed attempt failed.
    last_error: Option<String>,
}

impl ReceiverHealth {
    /// As stored (after a restart, or on another instance).
    pub fn from_control(control: Option<&DestinationControl>) -> ReceiverHealth {
        let Some(control) = control else {
            return ReceiverHealth::default();
        };
        let failing = control.failing_since_ms.is_some();
        ReceiverHealth {
            disabled: control
                .disabled_at_ms
                .map(|at| (control.disabled_reason.clone().unwrap_or_default(), at)),
            gone: control.gone_urls.clone(),
            failing_since_ms: control.failing_since_ms,
            failing_stored: failing,
            // It was being probed: it still is, until a success.
            consecutive_failures: if failing { PROBE_AFTER } else { 0 },
            next_probe_at_ms: None,
            troubled: failing || control.disabled_at_ms.is_some(),
            last_error: None,
        }
    }

    /// Being probed: one request at a time.
    pub fn probing(&self) -> bool {
        self.consecutive_failures >= PROBE_AFTER
    }

    pub fn failing_since_ms(&self) -> Option<i64> {
        self.failing_since_ms
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Requests that may be on the wire at once.
    pub fn slots(&self, max_in_flight: usize) -> usize {
        if self.disabled.is_some() {
            0
        } else if self.probing() {
            1
        } else {
            max_in_flight
        }
    }

    /// `Ok` if a request may start at `now_ms`; otherwise when one may (a probe's time).
    pub fn may_start(&self, now_ms: i64) -> Result<(), i64> {
        match self.next_probe_at_ms {
            Some(at) if self.probing() && now_ms < at => Err(at),
            _ => Ok(()),
        }
    }

    /// The URLs of `all` still worth a request.
    pub fn live_urls<'a>(&self, all: impl Iterator<Item = &'a str>) -> Vec<String> {
        all.filter(|u| !self.gone.iter().any(|g| g == u))
            .map(str::to_string)
            .collect()
    }

    /// Takes one attempt's summary; `urls` are the destination's URLs now,
    /// `disable_after` its `disable_after_s` (zero: never), `backoff` the retry schedule
    /// (initial, max) that spaces probes.
    pub fn observe(
        &mut self,
        attempt: &AttemptSummary,
        urls: &[String],
        disable_after: Duration,
        backoff: (Duration, Duration),
        rng: &mut impl Rng,
    ) -> Vec<HealthChange> {
        let mut changes = Vec::new();
        for url in &attempt.gone {
            if urls.contains(url) && !self.gone.contains(url) {
                self.gone.push(url.clone());
                changes.push(HealthChange::Store(ControlChange::UrlGone {
                    url: url.clone(),
                }));
            }
        }
        if attempt.succeeded {
            if self.failing_stored {
                changes.push(HealthChange::Store(ControlChange::Failing {
                    since_ms: None,
                }));
            }
            if std::mem::take(&mut self.troubled) {
                changes.push(HealthChange::Notify(Notice::Recovered {
                    failing_since_ms: self.failing_since_ms,
                }));
            }
            self.failing_since_ms = None;
            self.failing_stored = false;
            self.consecutive_failures = 0;
            self.next_probe_at_ms = None;
        } else {
            self.last_error.clone_from(&attempt.error);
            let since = *self.failing_since_ms.get_or_insert(attempt.at_ms);
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.probing() {
                self.troubled = true;
                if !self.failing_stored {
                    self.failing_stored = true;
                    changes.push(HealthChange::Store(ControlChange::Failing {
                        since_ms: Some(since),
                    }));
                }
                let probes = self.consecutive_failures - PROBE_AFTER + 1;
                let (initial, max) = backoff;
                let wait = next_delay(
                    probes,
                    attempt.retry_after,
                    initial,
                    max.min(PROBE_MAX_INTERVAL),
                    rng,
                );
                self.next_probe_at_ms = Some(attempt.ended_at_ms + wait.as_millis() as i64);
            }
            let failed_for =
                Duration::from_millis(attempt.at_ms.saturating_sub(since).max(0) as u64);
            if self.disabled.is_none() && !disable_after.is_zero() && failed_for >= disable_after {
                let reason = format!(
                    "no success for {} s (disable_after_s = {}); last error: {}",
                    failed_for.as_secs(),
                    disable_after.as_secs(),
                    attempt.error.as_deref().unwrap_or("unknown")
                );
                changes.extend(self.disable(reason, attempt.at_ms));
            }
        }
        if self.disabled.is_none() && !urls.is_empty() && urls.iter().all(|u| self.gone.contains(u))
        {
            changes.extend(self.disable(ALL_GONE.into(), attempt.at_ms));
        }
        changes
    }

    fn disable(&mut self, reason: String, at_ms: i64) -> Vec<HealthChange> {
        self.disabled = Some((reason.clone(), at_ms));
        self.troubled = true;
        let mut changes = Vec::new();
        if let (Some(since), false) = (self.failing_since_ms, self.failing_stored) {
            self.failing_stored = true;
            changes.push(HealthChange::Store(ControlChange::Failing {
                since_ms: Some(since),
            }));
        }
        changes.push(HealthChange::Store(ControlChange::Disabled {
            reason: reason.clone(),
            at_ms,
        }));
        changes.push(HealthChange::Notify(Notice::Disabled {
            reason,
            failing_since_ms: self.failing_since_ms,
        }));
        changes
    }

    /// Resumed by an operator (already in the store): enabled, every URL tried again,
    /// full concurrency. Its next success is reported if it was in trouble.
    pub fn resume(&mut self) {
        let troubled = self.troubled || self.disabled.is_some();
        *self = ReceiverHealth {
            troubled,
            ..ReceiverHealth::default()
        };
    }

    /// A reload: URLs gone are tried again, and a destination disabled because all of
    /// them were gone is enabled (the operator has presumably given it new ones). The
    /// store is changed by the reload itself ([`reload_change`]).
    pub fn reset_gone(&mut self) {
        if self
            .disabled
            .as_ref()
            .is_some_and(|(reason, _)| reason == ALL_GONE)
        {
            self.resume();
        }
        self.gone.clear();
    }
}

/// What a reload changes in a destination's stored control: URLs gone are forgotten, and
/// a destination disabled only for them is enabled.
pub fn reload_change(control: &DestinationControl) -> Option<ControlChange> {
    if control.disabled_reason.as_deref() == Some(ALL_GONE) {
        Some(ControlChange::Enabled)
    } else if !control.gone_urls.is_empty() {
        Some(ControlChange::UrlsReset)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));

    fn urls() -> Vec<String> {
        vec!["http://a/".into(), "http://b/".into()]
    }

    fn failed(at_ms: i64) -> AttemptSummary {
        AttemptSummary {
            at_ms,
            ended_at_ms: at_ms + 10,
            error: Some("connection refused".into()),
            ..AttemptSummary::default()
        }
    }

    fn succeeded(at_ms: i64) -> AttemptSummary {
        AttemptSummary {
            at_ms,
            ended_at_ms: at_ms + 10,
            succeeded: true,
            ..AttemptSummary::default()
        }
    }

    fn observe(health: &mut ReceiverHealth, a: &AttemptSummary, after: u64) -> Vec<HealthChange> {
        health.observe(
            a,
            &urls(),
            Duration::from_secs(after),
            BACKOFF,
            &mut rand::rng(),
        )
    }

    #[test]
    fn probing_starts_after_the_threshold_and_is_stored_once() {
        let mut h = ReceiverHealth::default();
        for i in 0..PROBE_AFTER - 1 {
            assert!(observe(&mut h, &failed(1000 + i as i64), 0).is_empty());
            assert_eq!(h.slots(10), 10);
        }
        // The receiver asks for 2 s: above the first probe's jitter (at most 1 s), so the
        // wait is known rather than drawn (a draw may be zero).
        let asked = AttemptSummary {
            retry_after: Some(Duration::from_secs(2)),
            ..failed(2000)
        };
        let changes = observe(&mut h, &asked, 0);
        assert_eq!(
            changes,
            [HealthChange::Store(ControlChange::Failing {
                since_ms: Some(1000)
            })]
        );
        assert!(h.probing());
        assert_eq!(h.slots(10), 1);
        assert_eq!(h.may_start(2010), Err(4010));
        assert_eq!(h.may_start(4009), Err(4010));
        assert!(h.may_start(4010).is_ok());
        // Drawn waits stay under the cap, and further failures are not written again.
        for i in 0..20 {
            let at_ms = 3000 + i * 100_000;
            assert!(observe(&mut h, &failed(at_ms), 0).is_empty());
            let cap = PROBE_MAX_INTERVAL.as_millis() as i64;
            assert!(h.may_start(at_ms + 10 + cap).is_ok());
        }
    }

    #[test]
    fn a_success_after_probing_is_reported_and_clears_the_stored_failure() {
        let mut h = ReceiverHealth::default();
        for i in 0..PROBE_AFTER {
            observe(&mut h, &failed(i as i64), 0);
        }
        let changes = observe(&mut h, &succeeded(100), 0);
        assert_eq!(
            changes,
            [
                HealthChange::Store(ControlChange::Failing { since_ms: None }),
                HealthChange::Notify(Notice::Recovered {
                    failing_since_ms: Some(0)
                })
            ]
        );
        assert!(!h.probing());
        assert_eq!(h.failing_since_ms(), None);
        // A success after a short run of failures is no news.
        observe(&mut h, &failed(200), 0);
        assert!(observe(&mut h, &succeeded(300), 0).is_empty());
    }

    #[test]
    fn failing_past_disable_after_disables_once() {
        let mut h = ReceiverHealth::default();
        assert!(observe(&mut h, &failed(0), 5).is_empty());
        assert!(observe(&mut h, &failed(4_999), 5).is_empty());
        let changes = observe(&mut h, &failed(5_000), 5);
        assert!(
            matches!(
                &changes[..],
                [
                    HealthChange::Store(ControlChange::Failing { since_ms: Some(0) }),
                    HealthChange::Store(ControlChange::Disabled { at_ms: 5_000, .. }),
                    HealthChange::Notify(Notice::Disabled {
                        failing_since_ms: Some(0),
                        ..
                    }),
                ]
            ),
            "{changes:?}"
        );
        assert_eq!(h.slots(10), 0);
        assert!(observe(&mut h, &failed(9_000), 5).is_empty());
        // Zero: never.
        let mut never = ReceiverHealth::default();
        assert!(observe(&mut never, &failed(0), 0).is_empty());
        assert!(observe(&mut never, &failed(10_000_000), 0).is_empty());
    }

    #[test]
    fn gone_urls_are_kept_and_all_gone_disables_until_a_reload() {
        let mut h = ReceiverHealth::default();
        let mut a = failed(0);
        a.gone = vec!["http://a/".into()];
        assert_eq!(
            observe(&mut h, &a, 0),
            [HealthChange::Store(ControlChange::UrlGone {
                url: "http://a/".into()
            })]
        );
        assert_eq!(
            h.live_urls(urls().iter().map(String::as_str)),
            ["http://b/"]
        );
        a.gone = vec!["http://b/".into()];
        let changes = observe(&mut h, &a, 0);
        assert!(
            changes.contains(&HealthChange::Store(ControlChange::Disabled {
                reason: ALL_GONE.into(),
                at_ms: 0
            }))
        );
        assert_eq!(h.slots(10), 0);
        h.reset_gone();
        assert_eq!(h.slots(10), 10);
        assert!(h.live_urls(urls().iter().map(String::as_str)).len() == 2);
    }

    #[test]
    fn stored_controls_come_back_as_they_were() {
        let control = DestinationControl {
            source: "s".into(),
            destination: "d".into(),
            disabled_at_ms: Some(7),
            disabled_reason: Some("why".into()),
            gone_urls: vec!["http://a/".into()],
            failing_since_ms: Some(3),
        };
        let mut h = ReceiverHealth::from_control(Some(&control));
        assert_eq!(h.disabled, Some(("why".into(), 7)));
        assert!(h.probing());
        h.resume();
        assert_eq!(h.slots(10), 10);
        assert!(h.gone.is_empty());
        // Its first success after the resume is news.
        assert!(observe(&mut h, &succeeded(10), 0)
            .iter()
            .any(|c| matches!(c, HealthChange::Notify(Notice::Recovered { .. }))));
    }
}
