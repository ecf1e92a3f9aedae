//! [`BoolLattice`]: false until set to true.

use super::Lattice;
use serde::{Deserialize, Serialize};

/// A flag that, once true, stays true (merge is logical or).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoolLattice {
    element: bool,
}

impl BoolLattice {
    /// A lattice holding `element`.
    pub fn new(element: bool) -> Self {
        Self { element }
    }
}

impl Lattice for BoolLattice {
    type Element = bool;

    fn reveal(&self) -> &bool {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut bool {
        &mut self.element
    }

    fn into_revealed(self) -> bool {
        self.element
    }

    fn merge_element(&mut self, element: &bool) {
        self.element |= *element;
    }

    fn assign(&mut self, element: bool) {
        self.element = element;
    }
}
