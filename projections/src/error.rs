#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Postgres failed or went away: the batch is retried later.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event cannot be understood: recorded, skipped, never retried blindly.
    #[error("undecodable event {event_id}: {detail}")]
    Poison { event_id: String, detail: String },
    /// JetStream failed (stream, consumer or message); several async-nats error kinds meet here.
    #[error("NATS")]
    Nats(#[source] async_nats::Error),
    #[error("unknown projection {0:?}")]
    UnknownProjection(String),
}

impl ProjectionError {
    pub fn poison(record: &ota_domain::EventRecord, detail: impl ToString) -> Self {
        Self::Poison { event_id: record.event_id(), detail: detail.to_string() }
    }
}
