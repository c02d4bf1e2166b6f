//! The pure decision step every aggregate implements.

use cqrs_es::Aggregate;

/// Decides which events a command produces, given the current state.
///
/// `handle` in each `impl Aggregate` only forwards here; the store calls
/// `decide` directly, so the same rule serves single commands and group commits.
/// An empty vector means the command is already satisfied (idempotent repeat).
pub trait Decide: Aggregate {
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}
