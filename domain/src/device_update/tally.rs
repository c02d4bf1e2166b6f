//! Where a device counts in its campaign's wave counters, and how an event
//! moves it: the rules the rollout's gates count by.
//!
//! The store keeps these counters in the same transaction as the events
//! (an inline projection), so a gate judges a report the moment it is
//! committed; the asynchronous `updates` read model counts by the same rules.

use crate::CampaignId;

use super::{DeviceUpdate, UpdateState};

/// One counter of a campaign wave: the devices whose attempt number `retry` is
/// in `state`. Retries are kept apart so a gate can tell a failure that will be
/// tried again from a final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TallyKey {
    pub campaign: CampaignId,
    pub wave: u32,
    pub retry: u32,
    pub state: UpdateState,
}

/// A device's current lane as far as the counters care: its action and, for a
/// campaign's wave, the counter it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TallySlot {
    pub action: u32,
    pub key: Option<TallyKey>,
}

impl DeviceUpdate {
    pub fn tally_slot(&self) -> Option<TallySlot> {
        let lane = self.current.as_ref()?;
        let key = match (lane.origin.campaign, lane.origin.wave) {
            (Some(campaign), Some(wave)) => {
                Some(TallyKey { campaign, wave, retry: lane.origin.retry, state: lane.state })
            }
            _ => None,
        };
        Some(TallySlot { action: lane.action, key })
    }
}

/// How the counters change when a device's slot goes from `before` to `after`
/// (one event applied). A new attempt in the same wave takes the earlier
/// attempt's place; a lane left for another campaign's stays counted where it
/// ended.
pub fn tally_delta(before: Option<TallySlot>, after: Option<TallySlot>) -> Vec<(TallyKey, i64)> {
    let Some(after) = after else { return vec![] };
    let mut deltas = Vec::with_capacity(2);
    match before {
        Some(before) if before == after => {}
        Some(before) if before.action == after.action => {
            deltas.extend(before.key.map(|k| (k, -1)));
            deltas.extend(after.key.map(|k| (k, 1)));
        }
        before => {
            let replaced = before
                .and_then(|b| b.key)
                .filter(|b| after.key.is_some_and(|a| (a.campaign, a.wave) == (b.campaign, b.wave)));
            deltas.extend(replaced.map(|k| (k, -1)));
            deltas.extend(after.key.map(|k| (k, 1)));
        }
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(campaign: CampaignId, wave: u32, retry: u32, state: UpdateState) -> TallyKey {
        TallyKey { campaign, wave, retry, state }
    }

    fn slot(action: u32, key: Option<TallyKey>) -> Option<TallySlot> {
        Some(TallySlot { action, key })
    }

    #[test]
    fn a_first_assignment_counts_once_and_a_report_moves_the_count() {
        let c = CampaignId::new_random();
        let assigned = key(c, 0, 0, UpdateState::Assigned);
        let done = key(c, 0, 0, UpdateState::Succeeded);
        assert_eq!(tally_delta(None, slot(1, Some(assigned))), vec![(assigned, 1)]);
        assert_eq!(tally_delta(slot(1, Some(assigned)), slot(1, Some(done))), vec![(assigned, -1), (done, 1)]);
        assert_eq!(tally_delta(slot(1, Some(done)), slot(1, Some(done))), vec![]);
    }

    #[test]
    fn a_retry_takes_the_failed_attempts_place_in_its_wave() {
        let c = CampaignId::new_random();
        let failed = key(c, 2, 0, UpdateState::Failed);
        let retry = key(c, 2, 1, UpdateState::Assigned);
        assert_eq!(tally_delta(slot(1, Some(failed)), slot(2, Some(retry))), vec![(failed, -1), (retry, 1)]);
    }

    #[test]
    fn a_lane_of_another_campaign_or_none_leaves_the_old_count_where_it_ended() {
        let (c1, c2) = (CampaignId::new_random(), CampaignId::new_random());
        let failed = key(c1, 0, 0, UpdateState::Failed);
        let other = key(c2, 0, 0, UpdateState::Assigned);
        assert_eq!(tally_delta(slot(1, Some(failed)), slot(2, Some(other))), vec![(other, 1)]);
        assert_eq!(tally_delta(slot(2, Some(other)), slot(3, None)), vec![]);
        assert_eq!(tally_delta(slot(3, None), slot(3, None)), vec![]);
    }

    #[test]
    fn another_wave_of_the_same_campaign_is_another_counter() {
        let c = CampaignId::new_random();
        let first = key(c, 0, 0, UpdateState::Succeeded);
        let later = key(c, 1, 0, UpdateState::Assigned);
        assert_eq!(tally_delta(slot(1, Some(first)), slot(2, Some(later))), vec![(later, 1)]);
    }
}
