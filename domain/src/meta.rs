//! Command metadata: who ordered it and why. It is stored with every event the
//! command produced, which makes the event store the audit log.
//!
//! This is the only place that converts to and from cqrs-es's `HashMap`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiKey,
    Device,
    /// The orchestrator itself (process manager, scheduler).
    System,
}

impl ActorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiKey => "api_key",
            ActorKind::Device => "device",
            ActorKind::System => "system",
        }
    }
}

impl FromStr for ActorKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "user" => Ok(ActorKind::User),
            "api_key" => Ok(ActorKind::ApiKey),
            "device" => Ok(ActorKind::Device),
            "system" => Ok(ActorKind::System),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn user(id: impl Into<String>) -> Self {
        Self { kind: ActorKind::User, id: id.into() }
    }
    pub fn system(component: impl Into<String>) -> Self {
        Self { kind: ActorKind::System, id: component.into() }
    }
    pub fn device(id: impl Into<String>) -> Self {
        Self { kind: ActorKind::Device, id: id.into() }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// Who ordered a command, under which request, and which event (if any) caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMeta {
    pub actor: Actor,
    pub request_id: Option<String>,
    /// `<aggregate_type>:<aggregate_id>:<sequence>` of the event that caused this command.
    pub causation_id: Option<String>,
}

impl CommandMeta {
    pub fn new(actor: Actor) -> Self {
        Self { actor, request_id: None, causation_id: None }
    }
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }
    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = Some(causation_id.into());
        self
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor_kind".to_owned(), self.actor.kind.as_str().to_owned()),
            ("actor_id".to_owned(), self.actor.id.clone()),
        ]);
        if let Some(r) = &self.request_id {
            map.insert("request_id".to_owned(), r.clone());
        }
        if let Some(c) = &self.causation_id {
            map.insert("causation_id".to_owned(), c.clone());
        }
        map
    }

    /// Reads metadata back; `None` if the actor is missing or unknown.
    pub fn from_map(map: &HashMap<String, String>) -> Option<Self> {
        let kind = map.get("actor_kind")?.parse().ok()?;
        let id = map.get("actor_id")?.clone();
        Some(Self {
            actor: Actor { kind, id },
            request_id: map.get("request_id").cloned(),
            causation_id: map.get("causation_id").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_the_cqrs_map() {
        let meta = CommandMeta::new(Actor::user("alice")).with_request_id("r-1").caused_by("Campaign:c:3");
        assert_eq!(CommandMeta::from_map(&meta.to_map()), Some(meta));
    }
}
