//! The pure model of the OTA orchestrator: aggregates, their commands and events,
//! identifiers and command metadata.
//!
//! Nothing here does I/O, reads the clock or spawns tasks. Time arrives inside
//! commands, stamped at the edge, so every decision is a function of state,
//! command and time and can be tested without a database.

pub mod api_key;
pub mod bus;
pub mod campaign;
pub mod decide;
pub mod device;
pub mod device_update;
pub mod firmware;
pub mod ids;
pub mod meta;
pub mod record;
pub mod refusal;
pub mod release;
pub mod rollout;
pub mod signature;
pub mod upcast;

pub use decide::Decide;
pub use ids::{CampaignId, DeviceId, FirmwareId, IdError};
pub use meta::{Actor, ActorKind, CommandMeta};
pub use record::EventRecord;
pub use refusal::{Refusal, Refused};
