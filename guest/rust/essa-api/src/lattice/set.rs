//! [`SetLattice`]: a set whose merge is union.

use super::Lattice;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::hash::Hash;

/// A grow-only set; merging is union.
///
/// ```
/// use essa_api::lattice::{Lattice, SetLattice};
///
/// let mut set = SetLattice::new(["a".to_string(), "b".to_string()].into());
/// set.merge_element(&["b".to_string(), "c".to_string()].into());
/// assert_eq!(set.reveal().len(), 3);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SetLattice<T> {
    #[serde(bound(
        serialize = "T: Serialize",
        deserialize = "T: Deserialize<'de> + Eq + Hash"
    ))]
    element: HashSet<T>,
}

impl<T: Eq + Hash> SetLattice<T> {
    /// A lattice holding the given set.
    pub fn new(element: HashSet<T>) -> Self {
        Self { element }
    }

    /// Adds one item.
    pub fn insert(&mut self, item: T) {
        self.element.insert(item);
    }

    /// The items that are in both this set and `other`.
    pub fn intersection<'a>(&'a self, other: &'a HashSet<T>) -> impl Iterator<Item = &'a T> {
        self.element.intersection(other)
    }
}

impl<T: Eq + Hash + Clone> Lattice for SetLattice<T> {
    type Element = HashSet<T>;

    fn reveal(&self) -> &HashSet<T> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut HashSet<T> {
        &mut self.element
    }

    fn into_revealed(self) -> HashSet<T> {
        self.element
    }

    fn merge_element(&mut self, element: &HashSet<T>) {
        for item in element {
            if !self.element.contains(item) {
                self.element.insert(item.clone());
            }
        }
    }

    fn assign(&mut self, element: HashSet<T>) {
        self.element = element;
    }
}

impl<T> Default for SetLattice<T> {
    fn default() -> Self {
        Self {
            element: HashSet::new(),
        }
    }
}

impl<T> PartialEq for SetLattice<T>
where
    HashSet<T>: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.element == other.element
    }
}

impl<T> Eq for SetLattice<T> where HashSet<T>: Eq {}
