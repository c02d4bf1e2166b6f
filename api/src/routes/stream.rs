//! Live changes as server-sent events, for consoles and dashboards: stored
//! events, filtered to what the page shows, as they are published, and after a
//! reconnect the ones missed since `Last-Event-ID` (the global position), read
//! back from the event store, so a page never misses a change.

use std::collections::{BTreeSet, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use ota_domain::campaign::{Campaign as CampaignState, CampaignEvent};
use ota_domain::{CampaignId, EventRecord};
use serde::Deserialize;
use tokio::sync::Mutex;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

/// Aggregate types a stream may follow.
const TYPES: [&str; 4] = ["Campaign", "DeviceUpdate", "Device", "Firmware"];
/// Missed events read back per query after a reconnect.
const BACKLOG_PAGE: i64 = 1_000;
/// Missed events read back at most; a client further behind reloads its page.
const BACKLOG_MAX: usize = 10_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated aggregate types: `Campaign`, `DeviceUpdate`, `Device`, `Firmware` (default: all four).
    types: Option<String>,
    /// Only events of this aggregate (a campaign's id, a device's id, ...).
    id: Option<String>,
    /// Only this campaign's events and those of its member devices (as the
    /// membership grows while the stream runs).
    campaign: Option<String>,
}

/// Server-sent events of stored events as they are published: `id` is the
/// event's global position, `event` its type, `data` the public record
/// (docs/events.md). Send `Last-Event-ID` to get the ones missed since (up to
/// 10,000; further behind, `event: reset` says to reload). Any role may follow.
#[utoipa::path(get, path = "/stream", operation_id = "stream_events", tag = "system", params(StreamQuery), responses(
    (status = 200, content_type = "text/event-stream", body = String, description = "An endless stream of events; a `: keep-alive` comment every 15 s."),
    (status = 404, body = ErrorBody, description = "`campaign` names no campaign (`campaign.not_found`)."),
    (status = 429, body = ErrorBody, description = "This identity already holds `OTA_STREAMS_PER_IDENTITY` streams open (`rate_limited`)."),
    (status = 400, body = ErrorBody, description = "A `campaign` that is not a UUID (`invalid_request`)."),
    (status = 422, body = ErrorBody, description = "An unknown aggregate type, or a bad `Last-Event-ID` (`invalid_field`)."),
))]
async fn stream(
    State(state): State<AppState>,
    who: Principal,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let types: BTreeSet<String> = match q.types.as_deref() {
        None | Some("") => TYPES.iter().map(|t| (*t).to_owned()).collect(),
        Some(list) => list.split(',').map(|t| t.trim().to_owned()).collect(),
    };
    if let Some(unknown) = types.iter().find(|t| !TYPES.contains(&t.as_str())) {
        let message = format!("types: {unknown:?} is not one of {}", TYPES.join(", "));
        return Err(ApiError::invalid("invalid_field", message));
    }
    let after = match headers.get("last-event-id").map(|v| v.to_str().unwrap_or_default().trim().to_owned()) {
        None => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::invalid("invalid_field", format!("Last-Event-ID: {raw:?} is not an event position"))
        })?),
    };
    // Held for as long as the stream is open: the body owns it.
    let slot = state.limits.stream_slot(&who.subject)?;
    let members = match &q.campaign {
        Some(campaign) => members_of(&state, campaign).await?,
        None => HashSet::new(),
    };
    let mut filter = Filter { types, id: q.id, campaign: q.campaign, members };
    // One subscription to every event, subscribed before the backlog is read so
    // nothing falls between the two: the relay publishes in global order, and
    // one subscription keeps that order (two would interleave, and a campaign's
    // membership could arrive after its devices' first events).
    let subscription =
        state.nats.subscribe(state.names.all_events()).await.map_err(|e| ApiError::unavailable("NATS", e))?;
    let (backlog, reset) = match after {
        Some(after) => backlog(&state, &mut filter, after).await?,
        None => (Vec::new(), false),
    };
    let last = backlog.last().map(|r| r.global_seq).or(after).unwrap_or(0);
    let reset = reset.then(|| Event::default().event("reset").data("too far behind: reload"));
    let missed = futures::stream::iter(backlog.iter().map(event).collect::<Vec<_>>());
    let follow = Arc::new(Mutex::new((filter, last)));
    let live = subscription.filter_map(move |message| {
        let (state, follow) = (state.clone(), follow.clone());
        let _open = &slot;
        async move {
            let record = serde_json::from_slice::<EventRecord>(&message.payload).ok()?;
            let mut guard = follow.lock().await;
            let (filter, last) = &mut *guard;
            // A record published twice, or again after the backlog had it, is sent once.
            if record.global_seq <= *last {
                return None;
            }
            *last = record.global_seq;
            if filter.grows_with(&record) && record.payload_omitted {
                // Too large to publish: the membership is read from the store.
                if let Some(campaign) = filter.campaign.clone() {
                    filter.members.extend(members_of(&state, &campaign).await.unwrap_or_default());
                }
            }
            filter.wants(&record).then(|| event(&record))
        }
    });
    let events = futures::stream::iter(reset).chain(missed).chain(live).map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The devices of a campaign's waves, as the store has them now.
async fn members_of(state: &AppState, campaign: &str) -> Result<HashSet<String>, ApiError> {
    let id = CampaignId::from_uuid(crate::validate::uuid("campaign", campaign)?);
    let (campaign, _) = state.store.load::<CampaignState>(&id).await?;
    if !campaign.exists() {
        return Err(ApiError::refused(
            ota_domain::Refusal::NotFound,
            "campaign.not_found",
            "campaign not found".into(),
        ));
    }
    let waves = campaign.membership.map(|m| m.waves).unwrap_or_default();
    Ok(waves.into_iter().flatten().map(|d| d.to_string()).collect())
}

struct Filter {
    types: BTreeSet<String>,
    id: Option<String>,
    campaign: Option<String>,
    /// With `campaign`: its members, grown as its membership events pass.
    members: HashSet<String>,
}

impl Filter {
    fn wants(&mut self, record: &EventRecord) -> bool {
        if !self.types.contains(&record.aggregate_type) {
            return false;
        }
        if self.id.as_ref().is_some_and(|id| *id != record.aggregate_id) {
            return false;
        }
        let Some(campaign) = &self.campaign else { return true };
        match record.aggregate_type.as_str() {
            "Campaign" if record.aggregate_id == *campaign => {
                self.admit(record);
                true
            }
            "DeviceUpdate" | "Device" => self.members.contains(&record.aggregate_id),
            _ => false,
        }
    }

    /// Whether the record is a membership event of the followed campaign.
    fn grows_with(&self, record: &EventRecord) -> bool {
        self.campaign.as_ref().is_some_and(|c| record.aggregate_type == "Campaign" && record.aggregate_id == *c)
            && matches!(record.event_type.as_str(), "MembershipResolved" | "MembersJoined")
    }

    /// Devices a membership event of the followed campaign brings in.
    fn admit(&mut self, record: &EventRecord) {
        match record.decode::<CampaignEvent>() {
            Ok(CampaignEvent::MembershipResolved { waves, .. }) => {
                self.members.extend(waves.into_iter().flatten().map(|d| d.to_string()));
            }
            Ok(CampaignEvent::MembersJoined { devices, .. }) => {
                self.members.extend(devices.into_iter().map(|d| d.to_string()));
            }
            _ => {}
        }
    }
}

fn event(record: &EventRecord) -> Event {
    let data = serde_json::to_string(record).unwrap_or_default();
    Event::default().id(record.global_seq.to_string()).event(record.event_type.clone()).data(data)
}

/// The events after `after` the filter wants, from the store; true if there were too many.
async fn backlog(state: &AppState, filter: &mut Filter, after: i64) -> Result<(Vec<EventRecord>, bool), ApiError> {
    let mut conn = state.pool.acquire().await?;
    let owned: Vec<String> = filter.types.iter().cloned().collect();
    let types: Vec<&str> = owned.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    let mut from = after;
    loop {
        let page = ota_projections::event_log::page_after(&mut conn, Some(&types), None, from, BACKLOG_PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.global_seq;
        let full = page.len() < BACKLOG_PAGE as usize;
        found.extend(page.into_iter().filter(|r| filter.wants(r)));
        if found.len() > BACKLOG_MAX {
            return Ok((Vec::new(), true));
        }
        if full {
            break;
        }
    }
    Ok((found, false))
}
