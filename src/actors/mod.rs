//! The actors: the router that the web layer hands stored events to, one delivery actor
//! per destination, the deletion actor that applies user deletion requests, the lease
//! keeper (which destinations this instance drives), the notifier (operational
//! webhooks) and retention (pruning finished work); each runs under an actix
//! `Supervisor` that restarts it when it fails.

pub mod deletion;
pub mod delivery;
pub mod leases;
pub mod notifier;
pub mod retention;
pub mod router;
