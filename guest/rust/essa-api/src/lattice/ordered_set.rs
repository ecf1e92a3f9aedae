//! [`OrderedSetLattice`]: a sorted set whose merge is union.

use super::Lattice;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A grow-only set kept in order (byte order for byte strings); merging is
/// union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderedSetLattice<T> {
    #[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de> + Ord"))]
    element: BTreeSet<T>,
}

impl<T: Ord> OrderedSetLattice<T> {
    /// A lattice holding the given set.
    pub fn new(element: BTreeSet<T>) -> Self {
        Self { element }
    }

    /// Adds one item.
    pub fn insert(&mut self, item: T) {
        self.element.insert(item);
    }
}

impl<T: Ord + Clone> Lattice for OrderedSetLattice<T> {
    type Element = BTreeSet<T>;

    fn reveal(&self) -> &BTreeSet<T> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut BTreeSet<T> {
        &mut self.element
    }

    fn into_revealed(self) -> BTreeSet<T> {
        self.element
    }

    fn merge_element(&mut self, element: &BTreeSet<T>) {
        for item in element {
            if !self.element.contains(item) {
                self.element.insert(item.clone());
            }
        }
    }

    fn assign(&mut self, element: BTreeSet<T>) {
        self.element = element;
    }
}

impl<T> Default for OrderedSetLattice<T> {
    fn default() -> Self {
        Self {
            element: BTreeSet::new(),
        }
    }
}
