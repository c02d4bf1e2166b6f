//! Wave membership: which device goes in which wave, seeded and stratified by hardware version.
//!
//! Peers admit devices in poll order, so the first wave skews towards always-online
//! units. Here the membership is a function of the fleet, the plan and a recorded
//! `u64` seed: the same three give the same waves forever, whatever order the fleet
//! was listed in. Each wave holds every hardware version in proportion to the
//! fleet, within one device, so a canary wave is representative.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::plan::{RolloutPlan, WaveSpec};
use crate::ids::DeviceId;

/// A device that may join a campaign, with the attribute waves are stratified by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCandidate {
    pub id: DeviceId,
    pub hardware_version: Option<String>,
}

/// The SplitMix64 generator (Steele, Lea & Flood 2014; constants as in Vigna's reference
/// `splitmix64.c`). It is written out here rather than taken from a crate so that a
/// recorded seed reproduces the same membership regardless of dependency upgrades.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..bound` (`bound > 0`), by Lemire's multiply-and-reject,
    /// which has no modulo bias.
    pub fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            // The low half decides rejection; the high half is the draw.
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle, drawing from the last position down.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// How many devices each wave of `plan` holds for a fleet of `fleet` devices.
///
/// A percent wave ends when the cumulative share `ceil(percent × fleet / 100)` is reached;
/// a count wave takes `count` devices. Every wave takes at least one device while any
/// remain and never more than remain, and the last wave takes the remainder. Waves
/// after the fleet runs out are empty. A plan without waves (refused by validation)
/// is read as the default single wave, so no device is ever left out.
pub fn wave_sizes(fleet: usize, plan: &RolloutPlan) -> Vec<usize> {
    let default_waves = [WaveSpec::Percent(100)];
    let waves = if plan.waves.is_empty() { &default_waves[..] } else { &plan.waves[..] };
    let total = fleet as u128;
    let mut taken = 0usize;
    let mut sizes = Vec::with_capacity(waves.len());
    for (index, wave) in waves.iter().enumerate() {
        let remaining = fleet - taken;
        let size = if index + 1 == waves.len() {
            remaining
        } else {
            let wanted = match *wave {
                WaveSpec::Percent(percent) => {
                    let target = (u128::from(percent) * total).div_ceil(100);
                    usize::try_from(target).unwrap_or(usize::MAX).saturating_sub(taken)
                }
                WaveSpec::Count(count) => usize::try_from(count).unwrap_or(usize::MAX),
            };
            wanted.clamp(1.min(remaining), remaining)
        };
        taken += size;
        sizes.push(size);
    }
    sizes
}

/// Splits the fleet into the plan's waves: seeded, stratified, deterministic.
///
/// 1. Devices are sorted by id (a repeated id keeps its first hardware version in sort
///    order), so the input order never matters.
/// 2. They are grouped by hardware version (no version is a group of its own), in
///    version order, and each group is shuffled with SplitMix64 seeded with `seed`.
/// 3. Each wave's share of each group is the proportional share rounded down or up,
///    such that waves get exactly their sizes and groups are used up exactly; the
///    order in which groups are offered the rounded-up shares is a seeded shuffle.
/// 4. Each wave's devices are shuffled once more, so its order (the order in which a
///    rate-limited wave is assigned) mixes hardware versions too.
pub fn assign_waves(devices: &[DeviceCandidate], plan: &RolloutPlan, seed: u64) -> Vec<Vec<DeviceId>> {
    let mut sorted: Vec<&DeviceCandidate> = devices.iter().collect();
    sorted.sort_by(|a, b| (&a.id, &a.hardware_version).cmp(&(&b.id, &b.hardware_version)));
    sorted.dedup_by(|later, earlier| later.id == earlier.id);

    let mut strata: BTreeMap<Option<&str>, Vec<DeviceId>> = BTreeMap::new();
    for device in &sorted {
        strata.entry(device.hardware_version.as_deref()).or_default().push(device.id.clone());
    }
    let mut rng = SplitMix64::new(seed);
    for group in strata.values_mut() {
        rng.shuffle(group);
    }

    let sizes = wave_sizes(sorted.len(), plan);
    let group_sizes: Vec<usize> = strata.values().map(Vec::len).collect();
    // Which groups get the rounded-up shares first is drawn too, so no hardware version
    // is favoured in small waves just because its name sorts first.
    let mut order: Vec<usize> = (0..group_sizes.len()).collect();
    rng.shuffle(&mut order);
    let shares = apportion(&group_sizes, &sizes, &order);
    let mut waves: Vec<Vec<DeviceId>> = sizes.iter().map(|&size| Vec::with_capacity(size)).collect();
    for (group, row) in strata.into_values().zip(&shares) {
        let mut members = group.into_iter();
        for (wave, &share) in waves.iter_mut().zip(row) {
            wave.extend(members.by_ref().take(share));
        }
    }
    for wave in &mut waves {
        rng.shuffle(wave);
    }
    waves
}

/// Rounds the table `ideal[g][w] = groups[g] × waves[w] / n` to whole devices so that
/// every row sums to `groups[g]`, every column to `waves[w]`, and every cell is the
/// ideal rounded down or up.
///
/// Such a rounding always exists (a table with integer margins is a point of a flow
/// polytope with integral vertices). We take the floors, then hand out the missing
/// units, one per fractional cell, as a bipartite b-matching between groups and waves
/// found by augmenting paths, serving groups in `order` (a permutation of their indices).
/// `groups` and `waves` must have the same sum.
fn apportion(groups: &[usize], waves: &[usize], order: &[usize]) -> Vec<Vec<usize>> {
    let n = groups.iter().sum::<usize>() as u128;
    if n == 0 {
        return vec![vec![0; waves.len()]; groups.len()];
    }
    let mut table = vec![vec![0usize; waves.len()]; groups.len()];
    let mut fractional = vec![vec![false; waves.len()]; groups.len()];
    for (g, &group) in groups.iter().enumerate() {
        for (w, &wave) in waves.iter().enumerate() {
            let product = group as u128 * wave as u128;
            // floor(product / n) <= min(group, wave), so it fits a usize.
            table[g][w] = (product / n) as usize;
            fractional[g][w] = !product.is_multiple_of(n);
        }
    }
    let mut wave_free: Vec<usize> =
        waves.iter().enumerate().map(|(w, &wave)| wave - table.iter().map(|row| row[w]).sum::<usize>()).collect();
    let mut extra = vec![vec![false; waves.len()]; groups.len()];
    let mut matcher = Matcher { fractional: &fractional, extra: &mut extra, wave_free: &mut wave_free };
    for &g in order {
        let missing = groups[g] - table[g].iter().sum::<usize>();
        for _ in 0..missing {
            let mut visited = vec![false; waves.len()];
            if !matcher.augment(g, &mut visited) {
                // Unreachable by the theorem above; if it were reached, giving the unit to
                // any wave with room still keeps every device in exactly one wave.
                if let Some(w) = matcher.wave_free.iter().position(|&free| free > 0) {
                    matcher.wave_free[w] -= 1;
                    table[g][w] += 1;
                }
            }
        }
    }
    for (row, extras) in table.iter_mut().zip(&extra) {
        for (cell, &plus_one) in row.iter_mut().zip(extras) {
            *cell += usize::from(plus_one);
        }
    }
    table
}

/// Augmenting-path search for the rounding units of `apportion`.
struct Matcher<'a> {
    fractional: &'a [Vec<bool>],
    extra: &'a mut [Vec<bool>],
    wave_free: &'a mut [usize],
}

impl Matcher<'_> {
    /// Gives group `g` one more rounding unit, moving other groups' units between waves
    /// if needed. Each wave is explored at most once per search.
    fn augment(&mut self, g: usize, visited: &mut [bool]) -> bool {
        let open = |w: usize, m: &Self| m.fractional[g][w] && !m.extra[g][w];
        // Prefer the wave with the most room, so augmenting paths are rarely needed.
        let direct = (0..self.wave_free.len())
            .filter(|&w| open(w, self) && self.wave_free[w] > 0)
            .max_by_key(|&w| (self.wave_free[w], std::cmp::Reverse(w)));
        if let Some(w) = direct {
            self.wave_free[w] -= 1;
            self.extra[g][w] = true;
            return true;
        }
        for w in 0..self.wave_free.len() {
            if !open(w, self) || visited[w] {
                continue;
            }
            visited[w] = true;
            for other in 0..self.extra.len() {
                // Move `other`'s unit out of wave `w` to make room for `g`.
                if other != g && self.extra[other][w] && self.augment(other, visited) {
                    self.extra[other][w] = false;
                    self.extra[g][w] = true;
                    return true;
                }
            }
        }
        false
    }
}
