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
    let lax = DeliveryPolicy { require_signature: false, allow_downgrade: false };
    let strict = DeliveryPolicy { require_signature: true, allow_downgrade: false };
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

#[test]
fn a_lower_release_counter_is_a_downgrade_unless_allowed() {
    use crate::release::{Envelope, Release, SignedRelease};
    let id = spec().id();
    let mut firmware = Firmware::default();
    firmware.apply(uploaded("abc"));
    let policy = DeliveryPolicy::default();
    assert_eq!(policy.admit_for(Some(9), id, &firmware), Ok(()), "an unsigned image has no counter to compare");
    let release = Release {
        name: "os".into(),
        version: "1.2.0".into(),
        device_model: "gw".into(),
        hardware_versions: vec!["a".into()],
        sha256: "abc".into(),
        size: 3,
        release_counter: 5,
    };
    let envelope = Envelope::sign(&release, "ci", &ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
    firmware.release = Some(SignedRelease { release, envelope, signed_by: vec!["ci".into()] });
    assert_eq!(policy.admit_for(Some(9), id, &firmware), Err(Undeliverable::Downgrade { id, running: 9, offered: 5 }));
    assert_eq!(policy.admit_for(Some(5), id, &firmware), Ok(()));
    assert_eq!(policy.admit_for(Some(4), id, &firmware), Ok(()));
    assert_eq!(policy.admit_for(None, id, &firmware), Ok(()), "a device on an unsigned image");
    assert_eq!(policy.allowing_downgrade(true).admit_for(Some(9), id, &firmware), Ok(()));
}

#[test]
fn an_upload_that_differs_from_its_signed_release_is_named() {
    use crate::release::Release;
    let release = Release {
        name: "os".into(),
        version: "2.0".into(),
        device_model: "gw".into(),
        hardware_versions: vec!["a".into(), "b".into()],
        sha256: "ab".repeat(32),
        size: 42,
        release_counter: 7,
    };
    let spec = FirmwareSpec {
        name: "os".into(),
        version: "2.0".into(),
        device_model: "gw".into(),
        hardware_versions: vec!["b".into(), "a".into()],
        release_notes: None,
    };
    let sha = "ab".repeat(32);
    assert_eq!(spec.differs_from(&release, &sha, 42), None);
    let other_model = FirmwareSpec { device_model: "gw-2".into(), ..spec.clone() };
    assert!(other_model.differs_from(&release, &sha, 42).is_some_and(|m| m.starts_with("device_model")));
    assert!(spec.differs_from(&release, &"cd".repeat(32), 42).is_some_and(|m| m.starts_with("sha256")));
    assert!(spec.differs_from(&release, &sha, 43).is_some_and(|m| m.starts_with("size")));
}
