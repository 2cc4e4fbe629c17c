//! A secret string (write key, shared secret, admin token): never printed, compared in
//! constant time.

use std::fmt;

use subtle::ConstantTimeEq;

/// Holds a secret. `Debug` and `Display` print `***`, so a secret cannot reach a log line
/// or an error body by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// True when `candidate` equals the secret; the time taken does not depend on where
    /// the two first differ.
    pub fn matches(&self, candidate: &str) -> bool {
        // ct_eq on slices of different lengths returns false at once; the length of a
        // secret is not what we protect.
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
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
