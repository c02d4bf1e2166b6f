//! What a device's DDI feedback means for its update (hawkbit.md 1.6 and 1.7).

use ota_domain::device_update::UpdateState;

use crate::wire::{Execution, Feedback, Finished};

/// The effect of `deploymentBase/{id}/feedback` on the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedbackEffect {
    /// Report this state (and progress, and message) on the update.
    Report { state: UpdateState, progress: Option<u8>, message: Option<String> },
    /// Accepted and answered 200, but nothing changes: `canceled` from the device is
    /// only an intent in hawkBit, and the action stays open until `closed`.
    Nothing,
}

/// Maps deployment feedback onto the update, given where the update stands now.
pub fn deployment_effect(current: UpdateState, feedback: &Feedback) -> FeedbackEffect {
    let status = &feedback.status;
    let progress = status.result.progress.as_ref().and_then(progress_percent);
    let message = status.message();
    let report = |state| FeedbackEffect::Report { state, progress, message: message.clone() };
    match (status.execution, status.result.finished) {
        (Execution::Closed, Finished::Failure) => report(UpdateState::Failed),
        (Execution::Closed, Finished::Success | Finished::None) => report(UpdateState::Succeeded),
        (Execution::Download, _) => report(UpdateState::Downloading),
        (Execution::Downloaded, _) => report(UpdateState::Downloaded),
        (Execution::Rejected, _) => report(UpdateState::Rejected),
        (Execution::Canceled, _) => FeedbackEffect::Nothing,
        // "Still working": at least downloading, never backwards.
        (Execution::Proceeding | Execution::Scheduled | Execution::Resumed, _) => {
            let state = match current.rank() < UpdateState::Downloading.rank() || current.is_terminal() {
                true => UpdateState::Downloading,
                false => current,
            };
            report(state)
        }
    }
}

/// The device's answer to `cancelAction/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAnswer {
    Accepted,
    Refused,
    /// Still thinking (`proceeding`, `scheduled`, ...): nothing changes yet.
    Pending,
}

/// `closed`+`success` accepts; `rejected` or `closed`+`failure` refuses. `canceled`
/// is taken as acceptance too: hawkBit's refusal of it is a known trap (#952).
pub fn cancel_answer(feedback: &Feedback) -> CancelAnswer {
    match (feedback.status.execution, feedback.status.result.finished) {
        (Execution::Closed, Finished::Failure) | (Execution::Rejected, _) => CancelAnswer::Refused,
        (Execution::Closed, _) | (Execution::Canceled, _) => CancelAnswer::Accepted,
        _ => CancelAnswer::Pending,
    }
}

/// A percentage from whatever clients put in `progress`: `{cnt, of}` (SWUpdate,
/// hawkbit-rs), `{"percentage": n}` (rauc-hawkbit); `None` for anything else.
pub fn progress_percent(progress: &serde_json::Value) -> Option<u8> {
    let number = |key: &str| progress.get(key).and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()));
    let percent = match (number("cnt"), number("of"), number("percentage")) {
        (Some(cnt), Some(of), _) if of > 0.0 => cnt / of * 100.0,
        (_, _, Some(p)) => p,
        _ => return None,
    };
    percent.is_finite().then(|| percent.clamp(0.0, 100.0) as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn feedback(body: serde_json::Value) -> Feedback {
        serde_json::from_value(body).unwrap_or_else(|e| panic!("feedback parses: {e}"))
    }

    fn status(execution: &str, finished: &str) -> Feedback {
        feedback(json!({"status": {"execution": execution, "result": {"finished": finished}}}))
    }

    #[test]
    fn execution_and_finished_map_as_hawkbit_does() {
        let cases = [
            ("closed", "success", Some(UpdateState::Succeeded)),
            ("closed", "none", Some(UpdateState::Succeeded)),
            ("closed", "failure", Some(UpdateState::Failed)),
            ("download", "none", Some(UpdateState::Downloading)),
            ("downloaded", "none", Some(UpdateState::Downloaded)),
            ("rejected", "none", Some(UpdateState::Rejected)),
            ("proceeding", "none", Some(UpdateState::Downloading)),
            ("scheduled", "none", Some(UpdateState::Downloading)),
            ("resumed", "none", Some(UpdateState::Downloading)),
            ("canceled", "none", None),
        ];
        for (execution, finished, want) in cases {
            let got = match deployment_effect(UpdateState::Notified, &status(execution, finished)) {
                FeedbackEffect::Report { state, .. } => Some(state),
                FeedbackEffect::Nothing => None,
            };
            assert_eq!(got, want, "{execution}/{finished}");
        }
    }

    #[test]
    fn proceeding_never_moves_an_update_backwards() {
        let effect = deployment_effect(UpdateState::Installing, &status("proceeding", "none"));
        assert!(matches!(effect, FeedbackEffect::Report { state: UpdateState::Installing, .. }));
    }

    #[test]
    fn what_real_clients_send_parses() {
        // SWUpdate: numeric id, time, progress with of = 0, details as log lines.
        let swupdate = feedback(json!({"id": 8, "time": "20240101T120000", "status": {"result": {"progress":
            {"cnt": 0, "of": 0}, "finished": "none"}, "execution": "proceeding", "details": ["Installing", "2/5"]}}));
        assert_eq!(swupdate.status.message().as_deref(), Some("Installing; 2/5"));
        assert_eq!(swupdate.status.result.progress.as_ref().and_then(progress_percent), None);
        // rauc-hawkbit: empty progress, or a percentage.
        let rauc = feedback(json!({"id": "8", "status": {"execution": "proceeding", "result": {"finished": "none",
            "progress": {}}}}));
        assert_eq!(rauc.status.result.progress.as_ref().and_then(progress_percent), None);
        assert_eq!(progress_percent(&json!({"percentage": 42})), Some(42));
        assert_eq!(progress_percent(&json!({"cnt": 3, "of": 4})), Some(75));
        assert_eq!(progress_percent(&json!({"cnt": 9, "of": 4})), Some(100));
        assert_eq!(progress_percent(&json!("half")), None);
        // Without execution the body is refused.
        assert!(serde_json::from_value::<Feedback>(json!({"status": {"result": {"finished": "none"}}})).is_err());
    }

    #[test]
    fn cancel_feedback_accepts_refuses_or_waits() {
        assert_eq!(cancel_answer(&status("closed", "success")), CancelAnswer::Accepted);
        assert_eq!(cancel_answer(&status("canceled", "none")), CancelAnswer::Accepted);
        assert_eq!(cancel_answer(&status("closed", "failure")), CancelAnswer::Refused);
        assert_eq!(cancel_answer(&status("rejected", "success")), CancelAnswer::Refused);
        assert_eq!(cancel_answer(&status("proceeding", "none")), CancelAnswer::Pending);
    }

    proptest! {
        #[test]
        fn any_json_progress_gives_a_percentage_or_nothing(cnt in any::<f64>(), of in any::<f64>(), p in any::<i64>()) {
            for value in [json!({"cnt": cnt, "of": of}), json!({"percentage": p}), json!([cnt, of])] {
                if let Some(percent) = progress_percent(&value) {
                    prop_assert!(percent <= 100);
                }
            }
        }

        #[test]
        fn arbitrary_feedback_bodies_parse_or_fail_without_panicking(body in "\\PC{0,200}") {
            let _ = serde_json::from_str::<Feedback>(&body).map(|f| f.status.message());
        }
    }
}
