//! Console sessions without server-side state, so that any instance on the store can
//! serve any page: the cookie carries its expiry and a random nonce, signed with a key
//! derived from the admin token (a new token signs everyone out). Each form carries a
//! CSRF token derived from the session's nonce; the cookie is HttpOnly and
//! SameSite=Strict, so another site can neither read it nor send it.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

pub const COOKIE: &str = "webhookd_console";
/// How long a sign-in lasts.
pub const LIFETIME_S: i64 = 8 * 3600;

/// A signed-in console session.
#[derive(Debug, Clone)]
pub struct Session {
    nonce: String,
    key: [u8; 32],
}

impl Session {
    /// A new session for the holder of `token`, and its cookie value.
    pub fn start(token: &Secret, now_s: i64) -> (Session, String) {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let key = key(token);
        let payload = format!("{}.{nonce}", now_s + LIFETIME_S);
        let cookie = format!("{payload}.{}", mac(&key, &payload));
        (Session { nonce, key }, cookie)
    }

    /// The session a cookie value proves, if it was signed with `token`'s key and has not
    /// expired.
    pub fn verify(token: &Secret, cookie: &str, now_s: i64) -> Option<Session> {
        let (payload, signature) = cookie.rsplit_once('.')?;
        let (expires, nonce) = payload.split_once('.')?;
        let key = key(token);
        let expected = mac(&key, payload);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now_s {
            return None;
        }
        Some(Session {
            nonce: nonce.to_string(),
            key,
        })
    }

    /// The token every form of this session carries.
    pub fn csrf_token(&self) -> String {
        mac(&self.key, &format!("csrf.{}", self.nonce))
    }

    /// Whether a form's token is this session's.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf_token().as_bytes().ct_eq(presented.as_bytes()))
    }
}

fn key(token: &Secret) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(b"webhookd console session\0");
    digest.update(token.expose().as_bytes());
    digest.finalize().into()
}

fn mac(key: &[u8; 32], text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_or_the_token_changes() {
        let token = Secret::new("t0ken");
        let (session, cookie) = Session::start(&token, 1_000);
        let again = Session::verify(&token, &cookie, 1_001).expect("valid");
        assert_eq!(again.csrf_token(), session.csrf_token());
        assert!(Session::verify(&token, &cookie, 1_000 + LIFETIME_S).is_none());
        assert!(Session::verify(&Secret::new("other"), &cookie, 1_001).is_none());
        let forged = cookie.replacen(&(1_000 + LIFETIME_S).to_string(), "99999999999", 1);
        assert!(Session::verify(&token, &forged, 1_001).is_none());
        assert!(session.csrf_matches(&session.csrf_token()));
        assert!(!session.csrf_matches("0"));
        let (other, _) = Session::start(&token, 1_000);
        assert!(!session.csrf_matches(&other.csrf_token()));
    }
}
