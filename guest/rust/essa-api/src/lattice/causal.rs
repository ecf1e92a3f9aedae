//! Causally consistent lattices: values tagged with vector clocks.
//!
//! On a merge, a value whose vector clock dominates the other's replaces it;
//! values written concurrently (neither clock dominates) are merged with
//! their own lattice merge, and the clocks are merged pointwise.

use super::{Lattice, MapLattice, MaxLattice};
use crate::ClientKey;
use serde::{Deserialize, Serialize};

/// A vector clock: a counter per writer (node id), merged pointwise (max).
pub type VectorClock = MapLattice<String, MaxLattice<usize>>;

/// A [`VectorClock`] and the value it versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorClockValuePair<T> {
    /// The value's version.
    pub vector_clock: VectorClock,
    /// The value.
    pub value: T,
}

impl<T> VectorClockValuePair<T> {
    /// A pair of the given clock and value.
    pub fn new(vector_clock: VectorClock, value: T) -> Self {
        Self {
            vector_clock,
            value,
        }
    }
}

/// A lattice value of one key with causal consistency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SingleKeyCausalLattice<T> {
    element: VectorClockValuePair<T>,
}

impl<T> SingleKeyCausalLattice<T> {
    /// A lattice holding the given clock and value.
    pub fn new(element: VectorClockValuePair<T>) -> Self {
        Self { element }
    }
}

/// Merges the clock `other` into `mine` and tells how the two were related.
fn merge_clocks(mine: &mut VectorClock, other: &VectorClock) -> Causality {
    let before = mine.clone();
    mine.merge(other);
    if mine == other {
        Causality::OtherIsNewer
    } else if *mine == before {
        Causality::MineIsNewer
    } else {
        Causality::Concurrent
    }
}

enum Causality {
    OtherIsNewer,
    MineIsNewer,
    Concurrent,
}

impl<T: Lattice + Clone> Lattice for SingleKeyCausalLattice<T> {
    type Element = VectorClockValuePair<T>;

    fn reveal(&self) -> &VectorClockValuePair<T> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut VectorClockValuePair<T> {
        &mut self.element
    }

    fn into_revealed(self) -> VectorClockValuePair<T> {
        self.element
    }

    fn merge_element(&mut self, other: &VectorClockValuePair<T>) {
        match merge_clocks(&mut self.element.vector_clock, &other.vector_clock) {
            Causality::OtherIsNewer => self.element.value = other.value.clone(),
            Causality::MineIsNewer => {}
            Causality::Concurrent => self.element.value.merge(&other.value),
        }
    }

    fn assign(&mut self, element: VectorClockValuePair<T>) {
        self.element = element;
    }
}

/// The content of a [`MultiKeyCausalLattice`]: a clock, the clocks of the
/// keys the value depends on, and the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiKeyCausalPayload<T> {
    /// The value's version.
    pub vector_clock: VectorClock,
    /// The versions of the keys this value was computed from.
    pub dependencies: MapLattice<ClientKey, VectorClock>,
    /// The value.
    pub value: T,
}

impl<T> MultiKeyCausalPayload<T> {
    /// A payload of the given clock, dependencies and value.
    pub fn new(
        vector_clock: VectorClock,
        dependencies: MapLattice<ClientKey, VectorClock>,
        value: T,
    ) -> Self {
        Self {
            vector_clock,
            dependencies,
            value,
        }
    }
}

/// A lattice value with causal consistency across keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MultiKeyCausalLattice<T> {
    element: MultiKeyCausalPayload<T>,
}

impl<T> MultiKeyCausalLattice<T> {
    /// A lattice holding the given payload.
    pub fn new(element: MultiKeyCausalPayload<T>) -> Self {
        Self { element }
    }
}

impl<T: Lattice + Clone> Lattice for MultiKeyCausalLattice<T> {
    type Element = MultiKeyCausalPayload<T>;

    fn reveal(&self) -> &MultiKeyCausalPayload<T> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut MultiKeyCausalPayload<T> {
        &mut self.element
    }

    fn into_revealed(self) -> MultiKeyCausalPayload<T> {
        self.element
    }

    fn merge_element(&mut self, other: &MultiKeyCausalPayload<T>) {
        match merge_clocks(&mut self.element.vector_clock, &other.vector_clock) {
            Causality::OtherIsNewer => {
                self.element.dependencies = other.dependencies.clone();
                self.element.value = other.value.clone();
            }
            Causality::MineIsNewer => {}
            Causality::Concurrent => {
                self.element.dependencies.merge(&other.dependencies);
                self.element.value.merge(&other.value);
            }
        }
    }

    fn assign(&mut self, element: MultiKeyCausalPayload<T>) {
        self.element = element;
    }
}
