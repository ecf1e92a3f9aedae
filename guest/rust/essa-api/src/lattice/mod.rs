//! Lattices: values whose concurrent writes merge instead of overwriting.
//!
//! Every value in the essa key-value store is a [`LatticeValue`]:
//! [`kvs_put`](crate::kvs_put) *merges* a value into the stored one (sets
//! are unioned, the later of two last-writer-wins values survives, ...), so
//! functions running at the same time on different executors can write one
//! key without losing each other's writes.
//!
//! These are the types essa-rs took from `anna_api::lattice`; the paths and
//! names are the same (`anna_api::lattice::SetLattice` is
//! `essa_api::lattice::SetLattice`).

use serde::{Deserialize, Serialize};

mod boolean;
pub mod causal;
pub mod last_writer_wins;
mod map;
mod max;
mod ordered_set;
mod set;

pub use self::boolean::BoolLattice;
pub use self::causal::{MultiKeyCausalLattice, SingleKeyCausalLattice};
pub use self::last_writer_wins::LastWriterWinsLattice;
pub use self::map::MapLattice;
pub use self::max::MaxLattice;
pub use self::ordered_set::OrderedSetLattice;
pub use self::set::SetLattice;

/// A join-semilattice: a value with a merge that is associative,
/// commutative and idempotent, so replicas that see the same writes in any
/// order end up equal.
pub trait Lattice {
    /// The plain value the lattice wraps (e.g. a `HashSet` for a set).
    type Element;

    /// The wrapped value.
    fn reveal(&self) -> &Self::Element;

    /// The wrapped value, mutably (changing it directly bypasses the merge).
    fn reveal_mut(&mut self) -> &mut Self::Element;

    /// The wrapped value, taking ownership.
    fn into_revealed(self) -> Self::Element;

    /// Merges a plain value into this lattice.
    fn merge_element(&mut self, element: &Self::Element);

    /// Merges another lattice of the same type into this one.
    fn merge(&mut self, other: &Self)
    where
        Self: Sized,
    {
        self.merge_element(other.reveal());
    }

    /// Replaces the wrapped value (no merge).
    fn assign(&mut self, element: Self::Element);
}

/// A value of the key-value store, as the guest ABI encodes it.
///
/// Encoded with serde + bincode 1.x (the variant as a `u32`, then its
/// payload); these are the bytes `essa_put_lattice` takes and
/// `essa_get_lattice_data` returns. Merging two values of different
/// variants is refused by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LatticeValue {
    /// Last writer wins: a timestamped byte string; the later one survives.
    Lww(LastWriterWinsLattice<Vec<u8>>),
    /// A set of byte strings; merge is union.
    Set(SetLattice<Vec<u8>>),
    /// A set of byte strings kept in byte order; merge is union.
    OrderedSet(OrderedSetLattice<Vec<u8>>),
    /// A set of byte strings with a vector clock (causal consistency).
    SingleCausal(SingleKeyCausalLattice<SetLattice<Vec<u8>>>),
    /// Like `SingleCausal`, plus the vector clocks of the keys it depends on.
    MultiCausal(MultiKeyCausalLattice<SetLattice<Vec<u8>>>),
}

/// A [`LatticeValue`] was not of the expected variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatticeTypeError {
    /// The variant asked for.
    pub expected: &'static str,
    /// The variant the value has.
    pub found: &'static str,
}

impl std::fmt::Display for LatticeTypeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "expected a {} lattice value, found a {} one",
            self.expected, self.found
        )
    }
}

impl std::error::Error for LatticeTypeError {}

macro_rules! variant_accessors {
    ($($variant:ident, $ty:ty, $as_fn:ident, $into_fn:ident;)*) => {
        impl LatticeValue {
            $(
                #[doc = concat!("The value as a `", stringify!($variant), "` lattice; an error for another variant.")]
                pub fn $as_fn(&self) -> Result<&$ty, LatticeTypeError> {
                    match self {
                        Self::$variant(value) => Ok(value),
                        other => Err(other.type_error(stringify!($variant))),
                    }
                }

                #[doc = concat!("The value as a `", stringify!($variant), "` lattice, taking ownership; an error for another variant.")]
                pub fn $into_fn(self) -> Result<$ty, LatticeTypeError> {
                    match self {
                        Self::$variant(value) => Ok(value),
                        other => Err(other.type_error(stringify!($variant))),
                    }
                }
            )*
        }

        $(
            impl From<$ty> for LatticeValue {
                fn from(value: $ty) -> Self {
                    Self::$variant(value)
                }
            }
        )*
    };
}

variant_accessors! {
    Lww, LastWriterWinsLattice<Vec<u8>>, as_lww, into_lww;
    Set, SetLattice<Vec<u8>>, as_set, into_set;
    OrderedSet, OrderedSetLattice<Vec<u8>>, as_ordered_set, into_ordered_set;
    SingleCausal, SingleKeyCausalLattice<SetLattice<Vec<u8>>>, as_single_causal, into_single_causal;
    MultiCausal, MultiKeyCausalLattice<SetLattice<Vec<u8>>>, as_multi_causal, into_multi_causal;
}

impl LatticeValue {
    /// The variant's name: `"Lww"`, `"Set"`, `"OrderedSet"`,
    /// `"SingleCausal"` or `"MultiCausal"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Lww(_) => "Lww",
            Self::Set(_) => "Set",
            Self::OrderedSet(_) => "OrderedSet",
            Self::SingleCausal(_) => "SingleCausal",
            Self::MultiCausal(_) => "MultiCausal",
        }
    }

    fn type_error(&self, expected: &'static str) -> LatticeTypeError {
        LatticeTypeError {
            expected,
            found: self.type_name(),
        }
    }

    /// Merges `other` into this value, as the store does on a put; an error
    /// (and no change) if the two are of different variants.
    pub fn try_merge(&mut self, other: &LatticeValue) -> Result<(), LatticeTypeError> {
        match (self, other) {
            (Self::Lww(a), Self::Lww(b)) => a.merge(b),
            (Self::Set(a), Self::Set(b)) => a.merge(b),
            (Self::OrderedSet(a), Self::OrderedSet(b)) => a.merge(b),
            (Self::SingleCausal(a), Self::SingleCausal(b)) => a.merge(b),
            (Self::MultiCausal(a), Self::MultiCausal(b)) => a.merge(b),
            (this, other) => return Err(other.type_error(this.type_name())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
