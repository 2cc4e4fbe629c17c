//! The parts of delivery kept apart from the actors that use them: signing, the
//! classification of an attempt's outcome (whether to retry), the backoff schedule (when),
//! and the HTTP client (its setup, and one request sent with it). All but the last are
//! pure.

pub mod backoff;
pub mod client;
pub mod decision;
pub mod outcome;
pub mod pace;
pub mod receiver;
pub mod request;
pub mod signature;
pub mod standard;
