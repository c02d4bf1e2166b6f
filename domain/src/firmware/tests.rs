use chrono::TimeZone;
use cqrs_es::test::TestFramework;

use super::*;

type Given = TestFramework<Firmware>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

fn spec() -> FirmwareSpec {
    FirmwareSpec {
        name: "os".into(),
        version: "1.2.0".into(),
        device_model: "gw".into(),
        hardware_versions: vec!["a".into()],
        release_notes: None,
    }
}

fn binary(sha256: &str) -> FirmwareBinary {
    FirmwareBinary {
        filename: "os.swu".into(),
        size: 3,
        sha256: sha256.into(),
        sha1: "s1".into(),
        md5: "m5".into(),
        storage_path: format!("sha256/{sha256}"),
    }
}

fn uploaded(sha256: &str) -> FirmwareEvent {
    FirmwareEvent::FirmwareUploaded {
        id: spec().id(),
        spec: spec(),
        binary: binary(sha256),
        signature: Default::default(),
        release: None,
        at: at(),
    }
}

#[test]
fn first_upload_records_the_firmware_under_its_derived_id() {
    Given::with(())
        .given_no_previous_events()
        .when(FirmwareCommand::Upload {
            spec: spec(),
            signature: Default::default(),
            release: None,
            binary: binary("aa"),
            at: at(),
        })
        .then_expect_events(vec![uploaded("aa")]);
}

#[test]
fn identical_upload_is_a_no_op() {
    Given::with(())
        .given(vec![uploaded("aa")])
        .when(FirmwareCommand::Upload {
            spec: spec(),
            signature: Default::default(),
            release: None,
            binary: binary("aa"),
            at: at(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn other_bytes_under_the_same_id_are_a_conflict() {
    Given::with(())
        .given(vec![uploaded("aa")])
        .when(FirmwareCommand::Upload {
            spec: spec(),
            signature: Default::default(),
            release: None,
            binary: binary("bb"),
            at: at(),
        })
        .then_expect_error(FirmwareError::DifferentContent {
            id: spec().id(),
            stored_sha256: "aa".into(),
            uploaded_sha256: "bb".into(),
        });
}

#[test]
fn deprecate_needs_an_existing_active_firmware() {
    Given::with(())
        .given_no_previous_events()
        .when(FirmwareCommand::Deprecate { reason: None, at: at() })
        .then_expect_error(FirmwareError::NotFound);
    Given::with(())
        .given(vec![uploaded("aa"), FirmwareEvent::FirmwareDeprecated { reason: None, at: at() }])
        .when(FirmwareCommand::Deprecate { reason: None, at: at() })
        .then_expect_error(FirmwareError::AlreadyDeprecated);
}

#[test]
fn delivery_admits_only_existing_active_and_when_required_verified_images() {
    let id = spec().id();
    let mut firmware = Firmware::default();
    let lax = DeliveryPolicy { require_signature: false };
    let strict = DeliveryPolicy { require_signature: true };
    assert_eq!(lax.admit(id, &firmware), Err(Undeliverable::Unknown(id)));
    firmware.apply(uploaded("abc"));
    assert_eq!(lax.admit(id, &firmware), Ok(()));
    assert_eq!(strict.admit(id, &firmware), Err(Undeliverable::Unverified(id)));
    firmware.signature = SignatureCheck::Verified { key_id: "release".into(), release_counter: Some(3) };
    assert_eq!(strict.admit(id, &firmware), Ok(()));
    firmware.apply(FirmwareEvent::FirmwareDeprecated { reason: None, at: at() });
    assert_eq!(strict.admit(id, &firmware), Err(Undeliverable::Deprecated(id)));
    assert_eq!(Undeliverable::Deprecated(id).kind(), "deprecated_firmware");
}
