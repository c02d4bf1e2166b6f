//! What the CLI prints for people (scripts read the JSON routes).

/// A campaign as it stood at a moment (`ota audit campaign`), for people.
pub fn campaign_at(audit: &ota_orchestrator::audit::CampaignAtT) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !audit.exists {
        let _ = writeln!(out, "campaign {} did not exist at {}", audit.campaign_id, audit.at);
        return out;
    }
    let _ = writeln!(out, "campaign {} \"{}\" at {}: {:?}", audit.campaign_id, audit.name, audit.at, audit.status);
    for wave in &audit.waves {
        let states: Vec<String> = wave.states.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(
            out,
            "  wave {}: {} devices, {} assigned: {}",
            wave.wave,
            wave.size,
            wave.assigned,
            states.join(", ")
        );
    }
    let _ = writeln!(out, "events:");
    for event in &audit.events {
        let actor = event.actor.as_deref().unwrap_or("unknown");
        let _ =
            writeln!(out, "  {} #{} {} by {}", event.recorded_at.to_rfc3339(), event.sequence, event.event_type, actor);
    }
    out
}
