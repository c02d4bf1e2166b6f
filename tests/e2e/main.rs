//! End-to-end tests against the real Postgres and NATS. One binary; a module
//! per capability. Each test spawns its own server, database and NATS prefix.

mod audit;
mod auth;
mod campaigns;
mod console;
mod contract;
mod ddi;
mod delivery;
mod device_bus;
mod devices;
mod faults;
mod firmware;
mod fuzz;
mod group_commit;
mod idempotency;
mod identities;
mod import;
mod in_flight;
mod limits;
mod nats_auth;
mod preview;
mod releases;
mod rollouts;
mod schema;
mod signatures;
mod spine;
mod stream;
mod subscribers;
mod swupdate;
mod tallies;
mod webhooks;
