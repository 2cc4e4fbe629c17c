//! The actors: the router that the web layer hands stored events to, one delivery actor
//! per destination, and the deletion actor that applies user deletion requests; each runs
//! under an actix `Supervisor` that restarts it when it fails.

pub mod deletion;
pub mod delivery;
pub mod leases;
pub mod router;
