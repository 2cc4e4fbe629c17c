//! The admin token, checked once per request by an extractor: a handler that takes
//! [`Admin`] is only reached with the right token; and the backoff that makes guessing
//! it from one address slow.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};

use super::{ApiError, ApiState};

/// Proof that the request carries `Authorization: Bearer <server.admin_token>`.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<ApiState>>() else {
            return ready(Err(ApiError::Unavailable("not ready".into())));
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        ready(check(req, state, presented).map(|()| Admin))
    }
}

/// With no token configured the admin API does not exist (404); a missing or wrong token
/// is 401, and a wrong one is logged with the client's address (never the token).
pub fn check(req: &HttpRequest, state: &ApiState, presented: Option<&str>) -> Result<(), ApiError> {
    let config = state.config.current();
    let Some(token) = &config.server.admin_token else {
        return Err(ApiError::NotFound(format!(
            "no endpoint {} {}",
            req.method(),
            req.path()
        )));
    };
    let presented = presented.ok_or_else(|| {
        ApiError::Unauthorized("the admin API needs Authorization: Bearer <admin_token>".into())
    })?;
    let peer = req.peer_addr().map(|a| a.ip());
    state.failed_auth.check(peer)?;
    if token.matches(presented.trim()) {
        state.failed_auth.succeeded(peer);
        Ok(())
    } else {
        wrong_token(state, peer, "api");
        log::warn!(
            "wrong admin token from {} for {} {}",
            peer.map_or_else(|| "an unknown address".into(), |ip| ip.to_string()),
            req.method(),
            crate::redact::log_text(req.path(), 200)
        );
        Err(ApiError::Unauthorized("wrong admin token".into()))
    }
}

/// Counts a wrong admin token from `peer` (in metrics, by `via`) towards its backoff.
pub fn wrong_token(state: &ApiState, peer: Option<IpAddr>, via: &str) {
    state
        .metrics
        .admin_auth_failures
        .with_label_values(&[via])
        .inc();
    state.failed_auth.failed(peer);
}

/// Wrong tokens allowed from one address before it has to wait.
const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// An address's failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the memory an attacker with many addresses can make
/// webhookd use); past it, the quietest are forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Failed admin authentications (API and console) per client address. After
/// [`FREE_FAILURES`] in a row, the address must wait before its next try, the right
/// token included: 1 s, then twice as long after each further failure, up to a minute.
/// A success clears the address.
#[derive(Debug, Default)]
pub struct FailedAuth {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    wait_until: Instant,
}

impl FailedAuth {
    /// `Err(429)` while `peer` must wait.
    pub fn check(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = peer else { return Ok(()) };
        let now = Instant::now();
        let addresses = self.lock();
        match addresses.get(&ip) {
            Some(f) if f.wait_until > now => {
                let wait = f.wait_until - now;
                Err(ApiError::TooManyRequests {
                    message: "too many wrong admin tokens from this address; wait and retry".into(),
                    retry_after_s: wait.as_secs_f64().ceil() as u64,
                })
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, peer: Option<IpAddr>) {
        let Some(ip) = peer else { return };
        let now = Instant::now();
        let mut addresses = self.lock();
        if addresses.len() >= MAX_ADDRESSES && !addresses.contains_key(&ip) {
            addresses.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if addresses.len() >= MAX_ADDRESSES {
                if let Some(quietest) = addresses
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(ip, _)| *ip)
                {
                    addresses.remove(&quietest);
                }
            }
        }
        let entry = addresses.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            wait_until: now,
        });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count >= FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES).min(6);
            entry.wait_until = now + (FIRST_WAIT * 2u32.pow(doublings)).min(MAX_WAIT);
        }
    }

    pub fn succeeded(&self, peer: Option<IpAddr>) {
        if let Some(ip) = peer {
            self.lock().remove(&ip);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.addresses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_five_failures_and_a_success_clears_it() {
        let guard = FailedAuth::default();
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        for _ in 0..4 {
            guard.failed(a);
            assert!(guard.check(a).is_ok());
        }
        guard.failed(a);
        match guard.check(a) {
            Err(ApiError::TooManyRequests { retry_after_s, .. }) => assert_eq!(retry_after_s, 1),
            other => panic!("{other:?}"),
        }
        assert!(guard.check(b).is_ok(), "another address is not held");
        guard.failed(a);
        match guard.check(a) {
            Err(ApiError::TooManyRequests { retry_after_s, .. }) => assert_eq!(retry_after_s, 2),
            other => panic!("{other:?}"),
        }
        guard.succeeded(a);
        assert!(guard.check(a).is_ok());
    }

    #[test]
    fn the_waits_stop_at_a_minute_and_memory_is_bounded() {
        let guard = FailedAuth::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..40 {
            guard.failed(a);
        }
        match guard.check(a) {
            Err(ApiError::TooManyRequests { retry_after_s, .. }) => assert_eq!(retry_after_s, 60),
            other => panic!("{other:?}"),
        }
        for n in 0..(MAX_ADDRESSES as u32 + 10) {
            guard.failed(Some(IpAddr::from(n.to_be_bytes())));
        }
        assert!(guard.lock().len() <= MAX_ADDRESSES);
    }
}
