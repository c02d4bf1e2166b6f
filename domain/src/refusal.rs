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
    /// The caller may not give this command, whatever its role (HTTP 403): four eyes.
    Forbidden,
}

/// An aggregate's refusal, as the edge reads it: the kind of refusal and a stable
/// code for the error body. Every aggregate error implements it, so one conversion
/// maps any of them (wrapped in the store's error) to a response.
pub trait Refused {
    /// The kind of refusal (invalid, conflict, not found).
    fn refusal(&self) -> Refusal;
    /// A stable code for the error body; never change one once published.
    fn code(&self) -> &'static str;
}
