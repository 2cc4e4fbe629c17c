//! `X-Signature`: the hex HMAC-SHA1 of the exact body bytes under the shared secret, as
//! Segment's Webhooks destination signs.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// `hex(HMAC-SHA1(secret, body))`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_vectors() {
        // RFC 2202, test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        // As Node computes it: crypto.createHmac('sha1', 's3cr3t').update('{"a":1}').digest('hex')
        assert_eq!(
            sign("s3cr3t", br#"{"a":1}"#),
            "9649526da846c63fae8f3f64fd170080174a9a78"
        );
    }
}
