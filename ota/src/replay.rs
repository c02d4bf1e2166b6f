//! `ota replay`: read models (and the gates' counters) rebuilt from the event store.

use ota_projections::ProjectionName;
use sqlx::PgPool;

/// What a replay rebuilt: events applied per read model, in the order asked,
/// and the events the gates' counters were rebuilt from, if asked.
pub struct Replayed {
    pub read_models: Vec<(ProjectionName, u64)>,
    pub tallies: Option<u64>,
}

/// Rebuilds every target in its own transaction on its own connection, all at
/// once: one waits on Postgres while another decodes. The pool needs a
/// connection per target, and one more for the counters.
pub async fn rebuild(pool: &PgPool, targets: &[ProjectionName], tallies: bool) -> anyhow::Result<Replayed> {
    let read_models = futures::future::try_join_all(targets.iter().map(|name| ota_projections::rebuild(pool, *name)));
    let counters = async {
        match tallies {
            true => ota_orchestrator::store::rebuild_wave_tallies(pool).await.map(Some),
            false => Ok(None),
        }
    };
    let (applied, tallies) = tokio::try_join!(async { read_models.await.map_err(anyhow::Error::from) }, async {
        counters.await.map_err(anyhow::Error::from)
    })?;
    Ok(Replayed { read_models: targets.iter().copied().zip(applied).collect(), tallies })
}
