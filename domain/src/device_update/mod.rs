//! The `DeviceUpdate` aggregate: one stream per device, the device's update lane.
//!
//! Keeping every update of a device in one stream makes "at most one active
//! update per device" an invariant of the aggregate, and the stream itself is
//! the device's audit trail.

mod model;
mod tally;
#[cfg(test)]
mod tests;

pub use model::{
    DeviceUpdate, DeviceUpdateCommand, DeviceUpdateError, DeviceUpdateEvent, Download, IgnoredReason, Lane, LaneKind,
    Origin, UnknownUpdateState, UpdateFirmware, UpdateState,
};
pub use tally::{tally_delta, TallyKey, TallySlot};
