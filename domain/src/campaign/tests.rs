use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;

use super::*;
use crate::decide::Decide;
use crate::ids::{CampaignId, DeviceId, FirmwareId};
use crate::refusal::{Refusal, Refused};
use crate::rollout::RolloutPlan;

type Given = TestFramework<Campaign>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap_or_default()
}

fn id() -> CampaignId {
    CampaignId::from_uuid(uuid::Uuid::nil())
}

fn firmware() -> CampaignFirmware {
    CampaignFirmware {
        id: FirmwareId::derive("os", "2", "gw"),
        name: "os".into(),
        version: "2".into(),
        device_model: "gw".into(),
    }
}

fn devices(ids: &[&str]) -> Vec<DeviceId> {
    ids.iter().map(|d| DeviceId::parse(d).unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn target(ids: &[&str]) -> Target {
    Target { device_ids: devices(ids), filter: None, continuous: false }
}

fn members() -> Membership {
    Membership { seed: 7, waves: vec![devices(&["a"]), devices(&["b"])], excluded: 0 }
}

fn created_with(rollout: RolloutPlan) -> CampaignEvent {
    CampaignEvent::CampaignCreated {
        id: id(),
        name: "spring".into(),
        firmware: firmware(),
        target: target(&["a", "b"]),
        rollout,
        rollback_of: None,
        created_by: Some("user:alice".into()),
        at: at(),
    }
}

fn created() -> CampaignEvent {
    created_with(RolloutPlan::default())
}

fn started() -> Vec<CampaignEvent> {
    let m = members();
    vec![
        created(),
        CampaignEvent::CampaignStarted { at: at() },
        CampaignEvent::MembershipResolved { seed: m.seed, waves: m.waves, excluded: 0, at: at() },
    ]
}

fn create(name: &str, ids: &[&str]) -> CampaignCommand {
    CampaignCommand::Create {
        id: id(),
        name: name.into(),
        firmware: firmware(),
        target: target(ids),
        rollout: RolloutPlan::default(),
        created_by: "user:alice".into(),
        at: at(),
    }
}

fn start() -> CampaignCommand {
    CampaignCommand::Start { membership: Some(members()), at: at() }
}

fn pause() -> CampaignCommand {
    CampaignCommand::Pause { reason: None, gate: None, at: at() }
}

#[test]
fn create_records_the_plan_with_a_trimmed_name() {
    Given::with(())
        .given_no_previous_events()
        .when(create("  spring ", &["a", "b"]))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_refuses_empty_targets_duplicates_blank_names_and_bad_plans() {
    Given::with(()).given_no_previous_events().when(create("x", &[])).then_expect_error(CampaignError::EmptyTarget);
    Given::with(())
        .given_no_previous_events()
        .when(create("x", &["a", "a"]))
        .then_expect_error(CampaignError::DuplicateDevice("a".into()));
    Given::with(()).given_no_previous_events().when(create("  ", &["a"])).then_expect_error(CampaignError::BadName);
    Given::with(()).given(vec![created()]).when(create("x", &["a"])).then_expect_error(CampaignError::AlreadyExists);
    let bad_plan = RolloutPlan { max_retries: 99, ..RolloutPlan::default() };
    let result = Campaign::default().decide(CampaignCommand::Create {
        id: id(),
        name: "x".into(),
        firmware: firmware(),
        target: target(&["a"]),
        rollout: bad_plan,
        created_by: "user:alice".into(),
        at: at(),
    });
    assert!(matches!(result, Err(CampaignError::BadPlan(_))), "{result:?}");
}

#[test]
fn commands_to_a_missing_campaign_are_not_found() {
    Given::with(()).given_no_previous_events().when(start()).then_expect_error(CampaignError::NotFound);
}

#[test]
fn start_records_the_membership_snapshot() {
    let m = members();
    Given::with(()).given(vec![created()]).when(start()).then_expect_events(vec![
        CampaignEvent::CampaignStarted { at: at() },
        CampaignEvent::MembershipResolved { seed: 7, waves: m.waves, excluded: 0, at: at() },
    ]);
    Given::with(())
        .given(vec![created()])
        .when(CampaignCommand::Start { membership: None, at: at() })
        .then_expect_error(CampaignError::MembershipMissing);
}

#[test]
fn a_future_start_time_schedules_the_campaign() {
    let later = at() + Duration::hours(2);
    Given::with(())
        .given(vec![created_with(RolloutPlan { start_at: Some(later), ..RolloutPlan::default() })])
        .when(CampaignCommand::Start { membership: None, at: at() })
        .then_expect_events(vec![CampaignEvent::CampaignScheduled { start_at: later, at: at() }]);
}

#[test]
fn waves_start_in_order_and_assignments_only_move_forward() {
    let mut campaign = Campaign::default();
    for e in started() {
        campaign.apply(e);
    }
    let step = |c: &Campaign, cmd| c.decide(cmd);
    assert!(matches!(
        step(&campaign, CampaignCommand::StartWave { wave: 1, passed: None, at: at() }),
        Err(CampaignError::WaveOutOfOrder { .. })
    ));
    for e in step(&campaign, CampaignCommand::StartWave { wave: 0, passed: None, at: at() }).unwrap_or_default() {
        campaign.apply(e);
    }
    assert_eq!(campaign.unassigned(0), 1);
    let record = CampaignCommand::RecordAssignments { wave: 0, through: 1, skipped: 0, at: at() };
    for e in step(&campaign, record.clone()).unwrap_or_default() {
        campaign.apply(e);
    }
    assert_eq!((campaign.unassigned(0), campaign.assigned_in_minute(at())), (0, 1));
    assert_eq!(step(&campaign, record), Ok(vec![]), "a repeated record is a no-op");
}

fn approve(by: &str, override_reason: Option<&str>) -> CampaignCommand {
    CampaignCommand::Approve { by: by.into(), override_reason: override_reason.map(str::to_owned), at: at() }
}

#[test]
fn approve_needs_a_wave_waiting_for_it() {
    let mut history = started();
    history.push(CampaignEvent::WaveStarted { wave: 0, passed: None, at: at() });
    Given::with(())
        .given(history.clone())
        .when(approve("user:bob", None))
        .then_expect_error(CampaignError::NothingToApprove);
    history.push(CampaignEvent::ApprovalRequested { wave: 0, passed: None, at: at() });
    Given::with(()).given(history).when(approve("user:bob", None)).then_expect_events(vec![
        CampaignEvent::WaveApproved { wave: 0, by: Some("user:bob".into()), override_reason: None, at: at() },
    ]);
}

#[test]
fn the_creator_approves_its_own_wave_only_with_a_recorded_override() {
    let mut history = started();
    history.push(CampaignEvent::WaveStarted { wave: 0, passed: None, at: at() });
    history.push(CampaignEvent::ApprovalRequested { wave: 0, passed: None, at: at() });
    Given::with(())
        .given(history.clone())
        .when(approve("user:alice", None))
        .then_expect_error(CampaignError::OwnApproval("user:alice".into()));
    Given::with(()).given(history).when(approve("user:alice", Some("night shift, alone"))).then_expect_events(vec![
        CampaignEvent::WaveApproved {
            wave: 0,
            by: Some("user:alice".into()),
            override_reason: Some("night shift, alone".into()),
            at: at(),
        },
    ]);
    assert_eq!(CampaignError::OwnApproval("user:alice".into()).refusal(), Refusal::Forbidden);
}

#[test]
fn pause_is_refused_unless_running_and_names_the_status() {
    Given::with(())
        .given(vec![created()])
        .when(pause())
        .then_expect_error(CampaignError::InvalidTransition { action: "pause", status: CampaignStatus::Draft });
}

#[test]
fn a_cancelled_campaign_accepts_nothing_more() {
    Given::with(())
        .given(vec![created(), CampaignEvent::CampaignCancelled { reason: None, at: at() }])
        .when(start())
        .then_expect_error(CampaignError::InvalidTransition { action: "start", status: CampaignStatus::Cancelled });
}

fn any_command() -> impl Strategy<Value = CampaignCommand> {
    prop_oneof![
        Just(create("c", &["a"])),
        Just(start()),
        Just(pause()),
        Just(CampaignCommand::Resume { at: at() }),
        Just(CampaignCommand::Cancel { reason: None, at: at() }),
        Just(CampaignCommand::Complete { passed: None, at: at() }),
        Just(CampaignCommand::Abort { reason: "x".into(), gate: None, at: at() }),
    ]
}

/// The allowed transitions, written independently of `decide` as a table.
fn allowed(from: CampaignStatus, action: &str) -> Option<CampaignStatus> {
    use CampaignStatus as S;
    match (from, action) {
        (S::Draft | S::Scheduled, "start") => Some(S::Running),
        (S::Running, "pause") => Some(S::Paused),
        (S::Paused, "resume") => Some(S::Running),
        (S::Draft | S::Scheduled | S::Running | S::Paused, "cancel") => Some(S::Cancelled),
        (S::Running, "complete") => Some(S::Completed),
        (S::Running | S::Paused, "abort") => Some(S::Aborted),
        _ => None,
    }
}

proptest! {
    #[test]
    fn no_command_sequence_leaves_the_transition_table(commands in proptest::collection::vec(any_command(), 0..40)) {
        let mut campaign = Campaign::default();
        for command in commands {
            let action = command.action();
            let before = campaign.status;
            let existed = campaign.exists();
            match campaign.decide(command) {
                Ok(events) => {
                    prop_assert!(!events.is_empty());
                    for e in events { campaign.apply(e); }
                    if existed {
                        prop_assert_eq!(Some(campaign.status), allowed(before, action));
                    } else {
                        prop_assert_eq!(action, "create");
                        prop_assert_eq!(campaign.status, CampaignStatus::Draft);
                    }
                }
                Err(_) => {
                    prop_assert_eq!(campaign.status, before);
                    prop_assert!(!existed || action == "create" || allowed(before, action).is_none());
                }
            }
            if before.is_terminal() {
                prop_assert_eq!(campaign.status, before);
            }
        }
    }
}

#[test]
fn every_campaign_status_round_trips_through_its_text() {
    for status in CampaignStatus::ALL {
        assert_eq!(status.as_str().parse::<CampaignStatus>(), Ok(status));
        assert_eq!(serde_json::to_value(status).ok(), Some(serde_json::json!(status.as_str())), "serde agrees");
    }
    assert_eq!("done".parse::<CampaignStatus>(), Err(UnknownCampaignStatus { value: "done".into() }));
}

#[test]
fn the_terminal_and_active_statuses_are_classified_by_is_terminal() {
    for status in CampaignStatus::ALL {
        assert_eq!(status.is_terminal(), CampaignStatus::TERMINAL.contains(&status), "{status}");
    }
    assert!(CampaignStatus::ACTIVE.iter().all(|s| !s.is_terminal()));
}

#[test]
fn only_a_draft_is_edited_or_deleted_and_a_deleted_one_is_gone() {
    let edit = |name: &str, ids: &[&str]| CampaignCommand::Edit {
        name: name.into(),
        firmware: firmware(),
        target: target(ids),
        rollout: RolloutPlan::default(),
        at: at(),
    };
    Given::with(()).given(vec![created()]).when(edit(" autumn ", &["a", "c"])).then_expect_events(vec![
        CampaignEvent::CampaignEdited {
            name: "autumn".into(),
            firmware: firmware(),
            target: target(&["a", "c"]),
            rollout: RolloutPlan::default(),
            at: at(),
        },
    ]);
    // The same definition again changes nothing; an invalid one is refused as at creation.
    Given::with(()).given(vec![created()]).when(edit("spring", &["a", "b"])).then_expect_events(vec![]);
    Given::with(()).given(vec![created()]).when(edit("spring", &[])).then_expect_error(CampaignError::EmptyTarget);
    let mut running = vec![created()];
    running.extend(started());
    let refused = Given::with(()).given(running.clone()).when(edit("x", &["a"])).inspect_result();
    assert!(matches!(refused, Err(CampaignError::InvalidTransition { action: "edit", .. })), "{refused:?}");
    let refused = Given::with(()).given(running).when(CampaignCommand::Delete { at: at() }).inspect_result();
    assert!(matches!(refused, Err(CampaignError::InvalidTransition { action: "delete", .. })), "{refused:?}");

    Given::with(())
        .given(vec![created()])
        .when(CampaignCommand::Delete { at: at() })
        .then_expect_events(vec![CampaignEvent::CampaignDeleted { at: at() }]);
    let mut gone = Campaign::default();
    gone.apply(created());
    gone.apply(CampaignEvent::CampaignDeleted { at: at() });
    assert!(!gone.exists());
    assert_eq!(
        gone.decide(CampaignCommand::Start { membership: Some(members()), at: at() }),
        Err(CampaignError::NotFound)
    );
}
