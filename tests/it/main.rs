//! Integration tests: the real `webhookd` binary, real HTTP on 127.0.0.1, a real SQLite
//! file in a temp dir.

mod common;

mod actions;
mod bench_smoke;
mod canonical;
mod chaos;
mod cli;
mod cluster;
mod console;
mod contract;
mod deletion;
mod delivery;
mod durability;
mod failing_receivers;
mod faults;
mod hostile;
mod hostile_receivers;
mod ingest;
mod listen;
mod many_destinations;
mod operations;
mod oracles;
mod properties;
mod retention;
mod segment_client;
mod supervision;
