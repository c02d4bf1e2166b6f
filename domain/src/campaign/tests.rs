use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use proptest::prelude::*;

use super::*;
use crate::decide::Decide;
use crate::ids::{CampaignId, DeviceId, FirmwareId};
use cqrs_es::Aggregate;

type Given = TestFramework<Campaign>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
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

fn target(ids: &[&str]) -> Target {
    Target {
        device_ids: ids
            .iter()
            .map(|d| DeviceId::parse(d).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
    }
}

fn created() -> CampaignEvent {
    CampaignEvent::CampaignCreated {
        id: id(),
        name: "spring".into(),
        firmware: firmware(),
        target: target(&["a", "b"]),
        at: at(),
    }
}

fn create(name: &str, devices: &[&str]) -> CampaignCommand {
    CampaignCommand::Create {
        id: id(),
        name: name.into(),
        firmware: firmware(),
        target: target(devices),
        at: at(),
    }
}

#[test]
fn create_records_the_plan_with_a_trimmed_name() {
    Given::with(())
        .given_no_previous_events()
        .when(create("  spring ", &["a", "b"]))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_refuses_empty_targets_duplicates_and_blank_names() {
    Given::with(())
        .given_no_previous_events()
        .when(create("x", &[]))
        .then_expect_error(CampaignError::EmptyTarget);
    Given::with(())
        .given_no_previous_events()
        .when(create("x", &["a", "a"]))
        .then_expect_error(CampaignError::DuplicateDevice("a".into()));
    Given::with(())
        .given_no_previous_events()
        .when(create("  ", &["a"]))
        .then_expect_error(CampaignError::BadName);
    Given::with(())
        .given(vec![created()])
        .when(create("x", &["a"]))
        .then_expect_error(CampaignError::AlreadyExists);
}

#[test]
fn commands_to_a_missing_campaign_are_not_found() {
    Given::with(())
        .given_no_previous_events()
        .when(CampaignCommand::Start { at: at() })
        .then_expect_error(CampaignError::NotFound);
}

#[test]
fn start_pause_resume_cancel_follow_the_lifecycle() {
    Given::with(())
        .given(vec![created()])
        .when(CampaignCommand::Start { at: at() })
        .then_expect_events(vec![CampaignEvent::CampaignStarted { at: at() }]);
    Given::with(())
        .given(vec![created(), CampaignEvent::CampaignStarted { at: at() }])
        .when(CampaignCommand::Pause {
            reason: None,
            at: at(),
        })
        .then_expect_events(vec![CampaignEvent::CampaignPaused {
            reason: None,
            at: at(),
        }]);
    Given::with(())
        .given(vec![
            created(),
            CampaignEvent::CampaignStarted { at: at() },
            CampaignEvent::CampaignPaused {
                reason: None,
                at: at(),
            },
        ])
        .when(CampaignCommand::Resume { at: at() })
        .then_expect_events(vec![CampaignEvent::CampaignResumed { at: at() }]);
}

#[test]
fn pause_is_refused_unless_running_and_names_the_status() {
    Given::with(())
        .given(vec![created()])
        .when(CampaignCommand::Pause {
            reason: None,
            at: at(),
        })
        .then_expect_error(CampaignError::InvalidTransition {
            action: "pause",
            status: CampaignStatus::Draft,
        });
}

#[test]
fn a_cancelled_campaign_accepts_nothing_more() {
    let history = vec![
        created(),
        CampaignEvent::CampaignCancelled {
            reason: None,
            at: at(),
        },
    ];
    Given::with(())
        .given(history)
        .when(CampaignCommand::Start { at: at() })
        .then_expect_error(CampaignError::InvalidTransition {
            action: "start",
            status: CampaignStatus::Cancelled,
        });
}

fn any_command() -> impl Strategy<Value = CampaignCommand> {
    prop_oneof![
        Just(create("c", &["a"])),
        Just(CampaignCommand::Start { at: at() }),
        Just(CampaignCommand::Pause {
            reason: None,
            at: at()
        }),
        Just(CampaignCommand::Resume { at: at() }),
        Just(CampaignCommand::Cancel {
            reason: None,
            at: at()
        }),
        Just(CampaignCommand::Complete { at: at() }),
        Just(CampaignCommand::Abort {
            reason: "x".into(),
            at: at()
        }),
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
                    prop_assert_eq!(events.len(), 1);
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
