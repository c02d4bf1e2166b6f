use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;

use super::*;
use crate::decide::Decide;
use crate::ids::FirmwareId;

type Given = TestFramework<DeviceUpdate>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).single().unwrap_or_default()
}

fn fw(version: &str) -> UpdateFirmware {
    UpdateFirmware { id: FirmwareId::derive("os", version, "gw"), version: version.into() }
}

fn assigned(action: u32) -> DeviceUpdateEvent {
    DeviceUpdateEvent::UpdateAssigned {
        action,
        kind: LaneKind::Update,
        origin: Origin::default(),
        firmware: fw("2"),
        from: Some(fw("1")),
        at: at(),
    }
}

fn report(state: UpdateState) -> DeviceUpdateCommand {
    DeviceUpdateCommand::Report { action: None, state, progress: None, message: None, at: at() }
}

fn reported(state: UpdateState) -> DeviceUpdateEvent {
    DeviceUpdateEvent::ProgressReported { action: 1, state, progress: None, message: None, at: at() }
}

fn cancel() -> DeviceUpdateCommand {
    DeviceUpdateCommand::Cancel { campaign: None, force: false, at: at() }
}

#[test]
fn an_update_nobody_fetched_is_cancelled_at_once() {
    Given::with(())
        .given(vec![assigned(1)])
        .when(cancel())
        .then_expect_events(vec![DeviceUpdateEvent::UpdateCancelled { action: 1, at: at() }]);
}

#[test]
fn a_fetched_update_asks_the_device_and_asks_once() {
    let notified = DeviceUpdateEvent::DeviceNotified { action: 1, at: at() };
    Given::with(())
        .given(vec![assigned(1), notified.clone()])
        .when(cancel())
        .then_expect_events(vec![DeviceUpdateEvent::CancelRequested { action: 1, at: at() }]);
    Given::with(())
        .given(vec![assigned(1), notified, DeviceUpdateEvent::CancelRequested { action: 1, at: at() }])
        .when(cancel())
        .then_expect_events(vec![]);
}

#[test]
fn forcing_a_cancel_does_not_ask() {
    Given::with(())
        .given(vec![assigned(1), reported(UpdateState::Installing)])
        .when(DeviceUpdateCommand::Cancel { campaign: None, force: true, at: at() })
        .then_expect_events(vec![DeviceUpdateEvent::UpdateCancelled { action: 1, at: at() }]);
}

#[test]
fn the_device_accepts_or_refuses_a_cancel_request() {
    let asked = || {
        vec![
            assigned(1),
            reported(UpdateState::Downloading),
            DeviceUpdateEvent::CancelRequested { action: 1, at: at() },
        ]
    };
    let answer = |accepted| DeviceUpdateCommand::AnswerCancel { action: 1, accepted, message: None, at: at() };
    Given::with(())
        .given(asked())
        .when(answer(true))
        .then_expect_events(vec![DeviceUpdateEvent::UpdateCancelled { action: 1, at: at() }]);
    Given::with(()).given(asked()).when(answer(false)).then_expect_events(vec![DeviceUpdateEvent::CancelRefused {
        action: 1,
        message: None,
        at: at(),
    }]);
    // Refused: the update goes on and may still succeed.
    let mut refused = asked();
    refused.push(DeviceUpdateEvent::CancelRefused { action: 1, message: None, at: at() });
    Given::with(())
        .given(refused.clone())
        .when(report(UpdateState::Succeeded))
        .then_expect_events(vec![reported(UpdateState::Succeeded)]);
    Given::with(())
        .given(refused)
        .when(answer(true))
        .then_expect_error(DeviceUpdateError::CancelNotRequested { action: 1 });
}

#[test]
fn a_device_reporting_cancelled_unasked_is_refused() {
    Given::with(())
        .given(vec![assigned(1), reported(UpdateState::Downloading)])
        .when(report(UpdateState::Cancelled))
        .then_expect_error(DeviceUpdateError::CancelNotRequested { action: 1 });
    Given::with(())
        .given(vec![
            assigned(1),
            reported(UpdateState::Downloading),
            DeviceUpdateEvent::CancelRequested { action: 1, at: at() },
        ])
        .when(report(UpdateState::Cancelled))
        .then_expect_events(vec![DeviceUpdateEvent::UpdateCancelled { action: 1, at: at() }]);
}

#[test]
fn the_installed_base_is_the_last_update_that_worked() {
    let mut device = DeviceUpdate::default();
    for e in [assigned(1), reported(UpdateState::Succeeded)] {
        device.apply(e);
    }
    assert_eq!(device.last_installed, Some((1, fw("2"))));
    device.apply(assigned(2));
    device.apply(DeviceUpdateEvent::ProgressReported {
        action: 2,
        state: UpdateState::Failed,
        progress: None,
        message: None,
        at: at(),
    });
    assert_eq!(device.last_installed, Some((1, fw("2"))));
}

#[test]
fn a_second_assignment_while_one_is_active_is_refused() {
    Given::with(())
        .given(vec![assigned(1)])
        .when(DeviceUpdateCommand::Assign { origin: Origin::default(), firmware: fw("3"), from: None, at: at() })
        .then_expect_error(DeviceUpdateError::AlreadyActive { action: 1, state: UpdateState::Assigned });
}

#[test]
fn a_new_assignment_after_the_last_one_ended_gets_the_next_action_number() {
    Given::with(())
        .given(vec![assigned(1), reported(UpdateState::Failed)])
        .when(DeviceUpdateCommand::Assign {
            origin: Origin::default(),
            firmware: fw("2"),
            from: Some(fw("1")),
            at: at(),
        })
        .then_expect_events(vec![assigned(2)]);
}

#[test]
fn a_duplicate_report_is_a_no_op() {
    Given::with(())
        .given(vec![assigned(1), reported(UpdateState::Downloading)])
        .when(report(UpdateState::Downloading))
        .then_expect_events(vec![]);
}

#[test]
fn an_out_of_order_report_is_recorded_and_changes_nothing() {
    Given::with(())
        .given(vec![assigned(1), reported(UpdateState::Installing)])
        .when(report(UpdateState::Downloading))
        .then_expect_events(vec![DeviceUpdateEvent::ReportIgnored {
            action: 1,
            state: UpdateState::Downloading,
            reason: IgnoredReason::OutOfOrder,
            at: at(),
        }]);
}

#[test]
fn a_late_report_never_reopens_a_cancelled_update() {
    Given::with(())
        .given(vec![assigned(1), DeviceUpdateEvent::UpdateCancelled { action: 1, at: at() }])
        .when(report(UpdateState::Succeeded))
        .then_expect_events(vec![DeviceUpdateEvent::ReportIgnored {
            action: 1,
            state: UpdateState::Succeeded,
            reason: IgnoredReason::Closed,
            at: at(),
        }]);
}

#[test]
fn devices_cannot_report_server_side_states() {
    Given::with(())
        .given(vec![assigned(1)])
        .when(report(UpdateState::TimedOut))
        .then_expect_error(DeviceUpdateError::NotReportable(UpdateState::TimedOut));
}

fn any_command() -> impl Strategy<Value = DeviceUpdateCommand> {
    let state = proptest::sample::select(UpdateState::ALL.to_vec());
    prop_oneof![
        Just(DeviceUpdateCommand::Assign { origin: Origin::default(), firmware: fw("2"), from: None, at: at() }),
        Just(DeviceUpdateCommand::MarkNotified { at: at() }),
        (state, proptest::option::of(0u8..=120), proptest::option::of(0u32..4)).prop_map(
            |(state, progress, action)| {
                DeviceUpdateCommand::Report { action, state, progress, message: None, at: at() }
            }
        ),
        any::<bool>().prop_map(|force| DeviceUpdateCommand::Cancel { campaign: None, force, at: at() }),
        (1u32..4, any::<bool>()).prop_map(|(action, accepted)| DeviceUpdateCommand::AnswerCancel {
            action,
            accepted,
            message: None,
            at: at()
        }),
        Just(DeviceUpdateCommand::TimeOut { action: None, at: at() }),
    ]
}

proptest! {
    #[test]
    fn no_command_sequence_reopens_or_rewinds_an_update(commands in proptest::collection::vec(any_command(), 0..60)) {
        let mut device = DeviceUpdate::default();
        for command in commands {
            let before = device.current.clone();
            if let Ok(events) = device.decide(command) {
                for e in events { device.apply(e); }
            }
            match (&before, &device.current) {
                (Some(old), Some(new)) if old.action == new.action => {
                    if old.state.is_terminal() {
                        prop_assert_eq!(old, new, "a closed update changed");
                    }
                    prop_assert!(new.state.rank() >= old.state.rank(), "update went backwards");
                }
                (Some(old), Some(new)) => {
                    prop_assert!(old.state.is_terminal(), "a second update started while one was active");
                    prop_assert_eq!(new.action, old.action + 1);
                }
                (Some(_), None) => prop_assert!(false, "an update vanished"),
                _ => {}
            }
            if let Some(lane) = &device.current {
                prop_assert!(lane.progress.is_none_or(|p| p <= 100));
            }
        }
    }
}

#[test]
fn rollback_goes_to_the_firmware_before_the_last_success_and_ends_rolled_back() {
    let history = vec![assigned(1), reported(UpdateState::Succeeded)];
    let mut device = DeviceUpdate::default();
    for e in history {
        device.apply(e);
    }
    assert_eq!(device.rollback_target(), Some(&fw("1")));
    let events =
        device.decide(DeviceUpdateCommand::RollBack { origin: Origin::default(), at: at() }).unwrap_or_default();
    assert_eq!(
        events,
        vec![DeviceUpdateEvent::UpdateAssigned {
            action: 2,
            kind: LaneKind::Rollback { of_action: 1 },
            origin: Origin::default(),
            firmware: fw("1"),
            from: Some(fw("2")),
            at: at(),
        }]
    );
    for e in events {
        device.apply(e);
    }
    let done = device
        .decide(DeviceUpdateCommand::Report {
            action: Some(2),
            state: UpdateState::Succeeded,
            progress: None,
            message: None,
            at: at(),
        })
        .unwrap_or_default();
    for e in done {
        device.apply(e);
    }
    assert_eq!(device.current.as_ref().map(|l| l.state), Some(UpdateState::RolledBack));
    assert_eq!(device.installed, vec![fw("1")]);
    assert_eq!(
        device.decide(DeviceUpdateCommand::RollBack { origin: Origin::default(), at: at() }),
        Err(DeviceUpdateError::NothingToRollBackTo)
    );
}

/// Issue 11: a rollback campaign re-sending its assignment after a crash.
#[test]
fn a_repeated_campaign_rollback_is_a_repeat_in_flight_and_after_it_ended() {
    let campaign =
        Origin { campaign: Some(crate::ids::CampaignId::new_random()), wave: Some(0), retry: 0, timeout_secs: None };
    let success = |action, firmware: UpdateFirmware, from| {
        vec![
            DeviceUpdateEvent::UpdateAssigned {
                action,
                kind: LaneKind::Update,
                origin: Origin::default(),
                firmware,
                from,
                at: at(),
            },
            DeviceUpdateEvent::ProgressReported {
                action,
                state: UpdateState::Succeeded,
                progress: None,
                message: None,
                at: at(),
            },
        ]
    };
    let mut device = DeviceUpdate::default();
    for e in success(1, fw("2"), Some(fw("1"))).into_iter().chain(success(2, fw("3"), Some(fw("2")))) {
        device.apply(e);
    }
    let roll_back = || DeviceUpdateCommand::RollBack { origin: campaign, at: at() };
    let first = device.decide(roll_back()).unwrap_or_default();
    assert_eq!(first.len(), 1, "the first rollback is assigned");
    for e in first {
        device.apply(e);
    }
    assert_eq!(device.decide(roll_back()), Ok(vec![]), "a repeat while it runs changes nothing");
    let done = device.decide(DeviceUpdateCommand::Report {
        action: Some(3),
        state: UpdateState::Succeeded,
        progress: None,
        message: None,
        at: at(),
    });
    for e in done.unwrap_or_default() {
        device.apply(e);
    }
    assert_eq!(device.current.as_ref().map(|l| l.state), Some(UpdateState::RolledBack));
    assert_eq!(device.installed.last(), Some(&fw("2")));
    assert_eq!(device.decide(roll_back()), Ok(vec![]), "a repeat after it ended goes no further back");
    // Another campaign's (or an operator's) rollback still may.
    assert_eq!(
        device.decide(DeviceUpdateCommand::RollBack { origin: Origin::default(), at: at() }).map(|e| e.len()),
        Ok(1)
    );
}

#[test]
fn a_device_without_a_recorded_previous_version_cannot_roll_back() {
    Given::with(())
        .given_no_previous_events()
        .when(DeviceUpdateCommand::RollBack { origin: Origin::default(), at: at() })
        .then_expect_error(DeviceUpdateError::NothingToRollBackTo);
}

#[test]
fn every_update_state_is_either_in_flight_or_terminal() {
    let in_flight: Vec<UpdateState> = UpdateState::ALL.into_iter().filter(UpdateState::is_in_flight).collect();
    let terminal: Vec<UpdateState> = UpdateState::ALL.into_iter().filter(UpdateState::is_terminal).collect();
    assert_eq!(in_flight, UpdateState::IN_FLIGHT);
    assert_eq!(
        terminal,
        [
            UpdateState::Succeeded,
            UpdateState::Failed,
            UpdateState::Rejected,
            UpdateState::TimedOut,
            UpdateState::Cancelled,
            UpdateState::RolledBack,
        ]
    );
    for state in UpdateState::ALL {
        assert_ne!(state.is_in_flight(), state.is_terminal(), "{state}");
        assert_eq!(state.is_terminal(), state.rank() == 5, "{state}: terminal states rank last");
    }
}

#[test]
fn the_in_flight_states_as_text_are_the_five_before_an_outcome() {
    assert_eq!(
        UpdateState::IN_FLIGHT.map(UpdateState::as_str),
        ["assigned", "notified", "downloading", "downloaded", "installing"]
    );
}

#[test]
fn every_update_state_round_trips_through_its_text() {
    for state in UpdateState::ALL {
        assert_eq!(state.as_str().parse::<UpdateState>(), Ok(state));
        assert_eq!(serde_json::to_value(state).ok(), Some(serde_json::json!(state.as_str())), "serde agrees");
    }
    assert_eq!("in_flight".parse::<UpdateState>(), Err(UnknownUpdateState { value: "in_flight".into() }));
    assert_eq!("Assigned".parse::<UpdateState>(), Err(UnknownUpdateState { value: "Assigned".into() }));
}
