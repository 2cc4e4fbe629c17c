//! The actors: the router that the web layer hands stored events to, and the supervision
//! that restarts it.

pub mod router;
