//! [`MapLattice`]: a map whose values are lattices, merged key by key.

use super::Lattice;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

/// A map of lattices: merging takes the union of the keys and merges the
/// values of keys both sides have.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MapLattice<K, V> {
    #[serde(bound(
        serialize = "K: Serialize, V: Serialize",
        deserialize = "K: Deserialize<'de> + Eq + Hash, V: Deserialize<'de>"
    ))]
    element: HashMap<K, V>,
}

impl<K: Eq + Hash, V> MapLattice<K, V> {
    /// A lattice holding the given map.
    pub fn new(element: HashMap<K, V>) -> Self {
        Self { element }
    }
}

impl<K, V> Lattice for MapLattice<K, V>
where
    K: Eq + Hash + Clone,
    V: Lattice + Clone,
{
    type Element = HashMap<K, V>;

    fn reveal(&self) -> &HashMap<K, V> {
        &self.element
    }

    fn reveal_mut(&mut self) -> &mut HashMap<K, V> {
        &mut self.element
    }

    fn into_revealed(self) -> HashMap<K, V> {
        self.element
    }

    fn merge_element(&mut self, element: &HashMap<K, V>) {
        for (key, value) in element {
            match self.element.get_mut(key) {
                Some(mine) => mine.merge(value),
                None => {
                    self.element.insert(key.clone(), value.clone());
                }
            }
        }
    }

    fn assign(&mut self, element: HashMap<K, V>) {
        self.element = element;
    }
}

impl<K, V> Default for MapLattice<K, V> {
    fn default() -> Self {
        Self {
            element: HashMap::new(),
        }
    }
}

impl<K, V> PartialEq for MapLattice<K, V>
where
    HashMap<K, V>: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.element == other.element
    }
}

impl<K, V> Eq for MapLattice<K, V> where HashMap<K, V>: Eq {}
