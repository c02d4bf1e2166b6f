//! Golden fixtures: every event type at every version it was ever stored at
//! decodes forever, through the upcaster chain, into today's type.
//!
//! `fixtures/events/<AggregateType>/<EventType>@<version>.json` holds one stored
//! payload; `<EventType>@<version>~<label>.json` holds another of the same
//! version (a shape an older writer of that version produced). The checked-in
//! files are the contract: never edit or delete one. When an event changes,
//! bump its version, add an upcaster step and add the new version's file
//! (`cargo test -p ota-domain --test golden -- --ignored` writes missing ones).

mod samples;

use std::path::{Path, PathBuf};

use cqrs_es::Aggregate;
use cqrs_es::DomainEvent;
use ota_domain::api_key::ApiKeyEvent;
use ota_domain::campaign::{Campaign, CampaignEvent};
use ota_domain::device::DeviceEvent;
use ota_domain::device_update::{DeviceUpdateEvent, LaneKind, Origin};
use ota_domain::firmware::FirmwareEvent;
use ota_domain::upcast::{self, DecodeError};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

/// One fixture file, named after what it holds.
struct Fixture {
    path: PathBuf,
    aggregate_type: String,
    event_type: String,
    version: String,
    payload: Value,
}

fn read_fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(fixtures()).expect("fixtures directory") {
        let dir = dir.expect("directory entry").path();
        let aggregate_type = dir.file_name().and_then(|n| n.to_str()).expect("aggregate directory name").to_owned();
        for file in std::fs::read_dir(&dir).expect("aggregate directory") {
            let path = file.expect("directory entry").path();
            let stem = path.file_stem().and_then(|n| n.to_str()).expect("fixture name").to_owned();
            let (event_type, rest) = stem.split_once('@').unwrap_or_else(|| panic!("{stem}: want Type@version"));
            let version = rest.split_once('~').map_or(rest, |(v, _label)| v);
            let text = std::fs::read_to_string(&path).expect("fixture text");
            let payload = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push(Fixture {
                aggregate_type: aggregate_type.clone(),
                event_type: event_type.to_owned(),
                version: version.to_owned(),
                payload,
                path,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Decodes through the chain and returns (event type, version) of the result.
fn decode_as<E: DeserializeOwned + DomainEvent>(f: &Fixture) -> Result<(String, String), DecodeError> {
    let event: E = upcast::decode(&f.aggregate_type, &f.event_type, &f.version, f.payload.clone())?;
    Ok((event.event_type(), event.event_version()))
}

fn decode_fixture(f: &Fixture) -> Result<(String, String), DecodeError> {
    match f.aggregate_type.as_str() {
        "ApiKey" => decode_as::<ApiKeyEvent>(f),
        "Campaign" => decode_as::<CampaignEvent>(f),
        "Device" => decode_as::<DeviceEvent>(f),
        "DeviceUpdate" => decode_as::<DeviceUpdateEvent>(f),
        "Firmware" => decode_as::<FirmwareEvent>(f),
        other => panic!("{}: no aggregate type {other}", f.path.display()),
    }
}

#[test]
fn every_fixture_decodes_through_the_upcaster_chain_into_the_current_type() {
    let fixtures = read_fixtures();
    assert!(fixtures.len() >= upcast::CURRENT.len(), "fixtures missing");
    for f in &fixtures {
        let (event_type, version) = decode_fixture(f).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        assert_eq!(event_type, f.event_type, "{}", f.path.display());
        assert_eq!(Some(version.as_str()), upcast::current_version(&f.aggregate_type, &f.event_type));
    }
}

#[test]
fn every_event_the_code_writes_has_a_fixture_at_its_current_version() {
    for (aggregate_type, _, samples) in samples::all() {
        for s in samples {
            let file = fixtures().join(aggregate_type).join(format!("{}@{}.json", s.event_type, s.event_version));
            assert!(file.exists(), "{} is missing (run the ignored writer)", file.display());
        }
    }
}

/// A shape change without a version bump shows up here: today's writer must still
/// produce exactly the current version's fixture.
#[test]
fn the_current_fixtures_are_what_the_code_writes_today() {
    for (aggregate_type, _, samples) in samples::all() {
        for s in samples {
            let file = fixtures().join(aggregate_type).join(format!("{}@{}.json", s.event_type, s.event_version));
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            let stored: Value = serde_json::from_str(&text).expect("fixture json");
            assert_eq!(
                stored,
                s.payload,
                "{} changed shape: bump its version, add an upcaster and a new fixture",
                file.display()
            );
        }
    }
}

#[test]
fn every_variant_has_a_sample_and_writes_the_registered_version() {
    let mut registered: Vec<(String, String, String)> =
        upcast::CURRENT.iter().map(|(a, e, v)| (a.to_string(), e.to_string(), v.to_string())).collect();
    let mut written = Vec::new();
    for (aggregate_type, variants, samples) in samples::all() {
        let mut seen: Vec<usize> = samples.iter().map(|s| s.variant).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..variants).collect::<Vec<_>>(), "{aggregate_type}: one sample per variant");
        written.extend(samples.into_iter().map(|s| (aggregate_type.to_owned(), s.event_type, s.event_version)));
    }
    registered.sort();
    written.sort();
    assert_eq!(written, registered, "upcast::CURRENT and the events' event_version() disagree");
}

#[test]
fn update_assigned_1_0_upcasts_to_a_first_try_update() {
    let file = fixtures().join("DeviceUpdate/UpdateAssigned@1.0.json");
    let payload: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("fixture")).expect("json");
    assert!(payload["UpdateAssigned"].get("kind").is_none(), "the 1.0 fixture predates `kind`");
    let event: DeviceUpdateEvent = upcast::decode("DeviceUpdate", "UpdateAssigned", "1.0", payload).expect("decodes");
    let DeviceUpdateEvent::UpdateAssigned { kind, origin, action, .. } = event else { panic!("wrong variant") };
    assert_eq!(kind, LaneKind::Update);
    assert_eq!(origin.wave, None);
    assert_eq!(origin.retry, 0);
    assert_eq!(action, 1);
    let _: Origin = origin;
}

#[test]
fn a_version_from_a_newer_release_is_refused_not_guessed() {
    let (_, _, samples) = samples::all().into_iter().find(|(a, ..)| *a == "DeviceUpdate").expect("samples");
    let s = samples.into_iter().find(|s| s.event_type == "UpdateAssigned").expect("sample");
    let err = upcast::decode::<DeviceUpdateEvent>("DeviceUpdate", "UpdateAssigned", "9.0", s.payload)
        .expect_err("a newer version does not decode");
    assert!(matches!(err, DecodeError::Upcast(upcast::UpcastError::UnknownVersion { .. })), "{err}");
}

/// A campaign folded from every campaign sample, as its snapshot stores it.
fn campaign_snapshot() -> Value {
    let mut campaign = Campaign::default();
    for event in samples::campaign_events() {
        campaign.apply(event);
    }
    serde_json::to_value(&campaign).expect("the state serialises")
}

fn snapshot_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/snapshots/Campaign@{}.json", Campaign::SNAPSHOT_VERSION))
}

/// Snapshots are not upcast: one of another version is dropped and the campaign
/// rebuilt from events. That only works if a changed shape gets a new version.
#[test]
fn the_campaign_snapshot_shape_is_unchanged_at_its_version() {
    let text = std::fs::read_to_string(snapshot_fixture())
        .expect("a snapshot fixture at Campaign::SNAPSHOT_VERSION (run the ignored writer after a bump)");
    let stored: Value = serde_json::from_str(&text).expect("fixture json");
    assert_eq!(
        stored,
        campaign_snapshot(),
        "Campaign's state changed shape: bump Campaign::SNAPSHOT_VERSION and write the new fixture"
    );
}

/// Writes the current-version fixture of every sample that has none yet; never
/// rewrites an existing file (those are the contract).
#[test]
#[ignore = "writes fixtures; run by hand after bumping an event version"]
fn write_missing_fixtures() {
    let snapshot = snapshot_fixture();
    if !snapshot.exists() {
        std::fs::create_dir_all(snapshot.parent().expect("a directory")).expect("snapshot directory");
        let text = serde_json::to_string_pretty(&campaign_snapshot()).expect("json") + "\n";
        std::fs::write(&snapshot, text).expect("write snapshot fixture");
    }
    for (aggregate_type, _, samples) in samples::all() {
        let dir = fixtures().join(aggregate_type);
        std::fs::create_dir_all(&dir).expect("fixture directory");
        for s in samples {
            let file = dir.join(format!("{}@{}.json", s.event_type, s.event_version));
            if !file.exists() {
                let text = serde_json::to_string_pretty(&s.payload).expect("json") + "\n";
                std::fs::write(&file, text).expect("write fixture");
            }
        }
    }
}
