//! What a read model must say about itself to be kept by a worker and replayed.

use std::fmt;
use std::str::FromStr;

use ota_domain::bus::BusNames;
use ota_domain::EventRecord;
use sqlx::PgConnection;

use crate::error::ProjectionError;

/// Every projection, by name (as `ota replay <name>` takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionName {
    Firmware,
    Campaigns,
    Activity,
    Devices,
    Updates,
    Downloads,
}

impl ProjectionName {
    pub const ALL: [ProjectionName; 6] = [
        ProjectionName::Firmware,
        ProjectionName::Campaigns,
        ProjectionName::Activity,
        ProjectionName::Devices,
        ProjectionName::Updates,
        ProjectionName::Downloads,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ProjectionName::Firmware => "firmware",
            ProjectionName::Campaigns => "campaigns",
            ProjectionName::Activity => "activity",
            ProjectionName::Devices => "devices",
            ProjectionName::Updates => "updates",
            ProjectionName::Downloads => "downloads",
        }
    }

    /// The aggregate types the projection reads; `None` means all.
    pub fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        match self {
            ProjectionName::Firmware => Some(&["Firmware"]),
            ProjectionName::Campaigns => Some(&["Campaign"]),
            ProjectionName::Activity => None,
            ProjectionName::Devices => Some(&["Device"]),
            ProjectionName::Updates => Some(&["DeviceUpdate"]),
            ProjectionName::Downloads => Some(&["DeviceUpdate"]),
        }
    }

    /// Of those aggregates, the event types it reads; `None` means all.
    ///
    /// Downloads reads only downloads, so the reports that make up most of a
    /// device's events cost it no offset reads or writes. Its offsets then jump
    /// from one download to the next; the events in between are read back as a
    /// gap and passed over, which keeps the check that none went missing.
    pub fn event_types(&self) -> Option<&'static [&'static str]> {
        match self {
            ProjectionName::Downloads => Some(&["DownloadServed"]),
            _ => None,
        }
    }

    /// Whether the projection's own rows say how far it has applied each aggregate,
    /// so that applying an event writes no `projection_offsets` row. Activity keeps a
    /// row for every event it applies, keyed by aggregate and sequence: writing the
    /// same fact again into `projection_offsets` was the costliest statement of a
    /// 100k-device rollout. A projection that keeps its own offsets must record
    /// every event it is given, so it never reports one as undecodable.
    pub fn keeps_own_offsets(&self) -> bool {
        matches!(self, ProjectionName::Activity)
    }

    /// SQL for the last sequence the projection applied of the aggregate named by the
    /// two SQL expressions (NULL when none), for offset reads and lag checks.
    pub fn last_applied_sql(&self, aggregate_type: &str, aggregate_id: &str) -> String {
        if self.keeps_own_offsets() {
            format!(
                "(SELECT a.sequence FROM activity a WHERE a.aggregate_type = {aggregate_type} \
                 AND a.aggregate_id = {aggregate_id} ORDER BY a.sequence DESC LIMIT 1)"
            )
        } else {
            format!(
                "(SELECT o.last_sequence FROM projection_offsets o WHERE o.projection = '{}' \
                 AND o.aggregate_type = {aggregate_type} AND o.aggregate_id = {aggregate_id} LIMIT 1)",
                self.as_str()
            )
        }
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProjectionName {
    type Err = ProjectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| ProjectionError::UnknownProjection(s.to_owned()))
    }
}

/// `Projection::apply` for projections that implement `apply_many`: a batch of one.
pub async fn apply_as_batch<P: Projection>(
    conn: &mut PgConnection,
    record: &EventRecord,
) -> Result<(), ProjectionError> {
    match P::apply_many(conn, std::slice::from_ref(record)).await?.into_iter().next() {
        Some((_, detail)) => Err(ProjectionError::poison(record, detail)),
        None => Ok(()),
    }
}

pub trait Projection: Send + Sync + 'static {
    const NAME: ProjectionName;
    /// Tables it owns, emptied before a rebuild.
    const TABLES: &'static [&'static str];

    /// Applies one event inside the caller's transaction. Must not commit, and
    /// must return `Poison` (if at all) before it writes anything.
    fn apply(
        conn: &mut PgConnection,
        record: &EventRecord,
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send;

    /// Applies several events, in order, inside the caller's transaction, and
    /// returns the undecodable ones (their index and why; they wrote nothing).
    /// The default applies them one by one; a projection may do better.
    fn apply_many(
        conn: &mut PgConnection,
        records: &[EventRecord],
    ) -> impl std::future::Future<Output = Result<Vec<(usize, String)>, ProjectionError>> + Send {
        async move {
            let mut poison = Vec::new();
            for (index, record) in records.iter().enumerate() {
                match Self::apply(conn, record).await {
                    Ok(()) => {}
                    Err(ProjectionError::Poison { detail, .. }) => poison.push((index, detail)),
                    Err(e) => return Err(e),
                }
            }
            Ok(poison)
        }
    }

    fn subject_filter(names: &BusNames) -> String {
        match Self::NAME.aggregate_types() {
            Some([only]) => names.events_of_type(only),
            _ => names.all_events(),
        }
    }

    fn wants(record: &EventRecord) -> bool {
        Self::NAME.aggregate_types().is_none_or(|types| types.contains(&record.aggregate_type.as_str()))
            && Self::NAME.event_types().is_none_or(|types| types.contains(&record.event_type.as_str()))
    }
}
