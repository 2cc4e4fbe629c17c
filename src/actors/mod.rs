//! The actors: the router that the web layer hands stored events to, and one delivery
//! actor per destination, each under an actix `Supervisor` that restarts it when it fails.

pub mod delivery;
pub mod router;
