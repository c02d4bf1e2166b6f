//! Wave sizes, the SplitMix64 generator and seeded, stratified membership.

use std::collections::BTreeMap;

use super::*;

fn fleet(counts: &[(Option<&str>, usize)]) -> Vec<DeviceCandidate> {
    let mut devices = Vec::new();
    for (hw, count) in counts {
        for i in 0..*count {
            devices.push(device(&format!("{}-{i:04}", hw.unwrap_or("none")), *hw));
        }
    }
    devices
}

fn mix(wave: &[DeviceId], devices: &[DeviceCandidate]) -> BTreeMap<Option<String>, usize> {
    let mut counts = BTreeMap::new();
    for id in wave {
        let hw = devices.iter().find(|d| &d.id == id).and_then(|d| d.hardware_version.clone());
        *counts.entry(hw).or_insert(0) += 1;
    }
    counts
}

#[test]
fn wave_sizes_follow_cumulative_percents_counts_and_the_remainder() {
    let counts = |c: &[WaveSpec]| RolloutPlan { waves: c.to_vec(), ..RolloutPlan::default() };
    use WaveSpec::{Count, Percent};
    let cases: Vec<(usize, RolloutPlan, Vec<usize>)> = vec![
        (1000, percent_waves(&[1, 10, 50, 100]), vec![10, 90, 400, 500]),
        // ceil(0.07) = 1, ceil(0.7) = 1 but each wave takes one, ceil(3.5) = 4, then the rest.
        (7, percent_waves(&[1, 10, 50, 100]), vec![1, 1, 2, 3]),
        (2, percent_waves(&[1, 10, 50, 100]), vec![1, 1, 0, 0]),
        (0, percent_waves(&[1, 10, 50, 100]), vec![0, 0, 0, 0]),
        (101, percent_waves(&[50, 100]), vec![51, 50]),
        // The last wave takes the remainder, whatever it says.
        (100, percent_waves(&[10, 20]), vec![10, 90]),
        (12, counts(&[Count(5), Count(5), Percent(100)]), vec![5, 5, 2]),
        (100, counts(&[Percent(10), Count(3)]), vec![10, 90]),
        (10, counts(&[Count(50), Count(1)]), vec![10, 0]),
        (100, counts(&[Count(30), Percent(10), Percent(100)]), vec![30, 1, 69]),
        (5, RolloutPlan { waves: vec![], ..RolloutPlan::default() }, vec![5]),
    ];
    for (fleet, plan, expected) in cases {
        assert_eq!(wave_sizes(fleet, &plan), expected, "{fleet} devices, {:?}", plan.waves);
    }
}

#[test]
fn splitmix64_matches_the_reference_implementation() {
    // Outputs of Vigna's splitmix64.c seeded with 1234567.
    let mut rng = SplitMix64::new(1_234_567);
    let outputs: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
    assert_eq!(
        outputs,
        [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
    );
    assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
}

#[test]
fn bounded_draws_stay_below_their_bound() {
    let mut rng = SplitMix64::new(7);
    for bound in [1, 2, 3, 10, 1 << 40, u64::MAX] {
        for _ in 0..100 {
            assert!(rng.below(bound) < bound);
        }
    }
}

#[test]
fn a_recorded_seed_reproduces_the_same_membership_forever() {
    // A golden value: if this changes, every recorded campaign would replay differently.
    // Sizes 2 and 6; the ideal canary mix is 1.25 a, 0.5 b and 0.25 without a version.
    let devices = fleet(&[(Some("a"), 5), (Some("b"), 2), (None, 1)]);
    let waves = assign_waves(&devices, &percent_waves(&[25, 100]), 42);
    let names: Vec<Vec<&str>> = waves.iter().map(|w| w.iter().map(DeviceId::as_str).collect()).collect();
    assert_eq!(names, GOLDEN_SEED_42.map(<[&str]>::to_vec));
}

const GOLDEN_SEED_42: [&[&str]; 2] =
    [&["none-0000", "a-0001"], &["b-0001", "b-0000", "a-0004", "a-0002", "a-0003", "a-0000"]];

#[test]
fn each_wave_holds_hardware_versions_in_proportion_to_the_fleet() {
    let devices = fleet(&[(Some("a"), 60), (Some("b"), 30), (None, 10)]);
    let waves = assign_waves(&devices, &percent_waves(&[10, 50, 100]), 9);
    let expected = [(6, 3, 1), (24, 12, 4), (30, 15, 5)];
    for (wave, (a, b, none)) in waves.iter().zip(expected) {
        let counts = mix(wave, &devices);
        let want = BTreeMap::from([(Some("a".to_owned()), a), (Some("b".to_owned()), b), (None, none)]);
        assert_eq!(counts, want);
    }
}

#[test]
fn a_small_canary_still_rounds_each_version_up_or_down_by_less_than_one() {
    // 3 devices out of 100 with 50/30/20: the ideal mix is 1.5/0.9/0.6.
    let devices = fleet(&[(Some("a"), 50), (Some("b"), 30), (Some("c"), 20)]);
    let waves = assign_waves(
        &devices,
        &RolloutPlan { waves: vec![WaveSpec::Count(3), WaveSpec::Percent(100)], ..RolloutPlan::default() },
        1,
    );
    let canary = mix(&waves[0], &devices);
    assert_eq!(canary.values().sum::<usize>(), 3);
    assert!(matches!(canary.get(&Some("a".to_owned())), Some(1 | 2)), "{canary:?}");
    assert!(canary.get(&Some("b".to_owned())).copied().unwrap_or(0) <= 1, "{canary:?}");
    assert!(canary.get(&Some("c".to_owned())).copied().unwrap_or(0) <= 1, "{canary:?}");
}

#[test]
fn the_input_order_does_not_change_the_waves_but_the_seed_does() {
    let devices = fleet(&[(Some("a"), 40), (Some("b"), 25), (None, 5)]);
    let plan = percent_waves(&[5, 30, 100]);
    let mut reversed = devices.clone();
    reversed.reverse();
    assert_eq!(assign_waves(&devices, &plan, 3), assign_waves(&reversed, &plan, 3));
    assert_ne!(assign_waves(&devices, &plan, 3), assign_waves(&devices, &plan, 4));
}

#[test]
fn a_repeated_device_is_placed_once() {
    let devices = vec![device("x", Some("b")), device("y", None), device("x", Some("a"))];
    let waves = assign_waves(&devices, &percent_waves(&[50, 100]), 0);
    let all: Vec<&DeviceId> = waves.iter().flatten().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1]);
}

#[test]
fn an_empty_fleet_gives_empty_waves() {
    assert_eq!(assign_waves(&[], &percent_waves(&[10, 100]), 0), vec![Vec::<DeviceId>::new(), Vec::new()]);
}

#[test]
fn a_fleet_of_unique_versions_is_still_partitioned_quickly() {
    let devices: Vec<_> = (0..2000).map(|i| device(&format!("d{i}"), Some(&format!("hw{i}")))).collect();
    let waves = assign_waves(&devices, &percent_waves(&[1, 5, 25, 50, 100]), 11);
    assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [20, 80, 400, 500, 1000]);
}
