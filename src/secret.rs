//! A secret string (write key, shared secret, admin token): never printed, compared in
//! constant time.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Holds a secret. `Debug` and `Display` print `***`, so a secret cannot reach a log line
/// or an error body by accident; read from a configuration, a value of the wrong type is
/// reported without itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// True when `candidate` equals the secret; the time taken depends neither on where
    /// the two first differ nor on their lengths (digests of both are compared).
    pub fn matches(&self, candidate: &str) -> bool {
        let digest = |s: &str| Sha256::digest(s.as_bytes());
        bool::from(digest(&self.0).ct_eq(&digest(candidate)))
    }

    /// The secret itself, for signing and comparison only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
        }
        // Any other type: one message, which never carries the value.
        d.deserialize_any(SecretVisitor)
            .map_err(|_: D::Error| de::Error::custom("must be a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter3"));
        assert!(!s.matches("hunter"));
    }
}
