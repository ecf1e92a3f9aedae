//! [`MaxLattice`]: keeps the largest value.

use super::Lattice;
use serde::{Deserialize, Serialize};

/// Keeps the largest value it has seen (e.g. a vector clock counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MaxLattice<T> {
    element: T,
}

impl<T> MaxLattice<T> {
    /// A lattice holding `element`.
    pub fn new(element: T) -> Self {
        Self { element }
    }
}

impl<T: Ord + Clone> Lattice for MaxLattice<T> {
    type Element = T;

    fn reveal(&self) -> &T {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut T {
        &mut self.element
    }

    fn into_revealed(self) -> T {
        self.element
    }

    fn merge_element(&mut self, element: &T) {
        if *element > self.element {
            self.element = element.clone();
        }
    }

    fn assign(&mut self, element: T) {
        self.element = element;
    }
}
