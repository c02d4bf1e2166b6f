//! How a domain refusal should be read by an edge (HTTP, NATS).

/// The kind of refusal, so the edge can map it without matching on every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The command is malformed or impossible for this aggregate (HTTP 422).
    Invalid,
    /// The command conflicts with the aggregate's current state (HTTP 409).
    Conflict,
    /// The aggregate the command addresses does not exist (HTTP 404).
    NotFound,
}
