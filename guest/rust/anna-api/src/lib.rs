//! Compatibility crate for code written for essa-rs.
//!
//! essa-rs functions took their lattice types from the `anna-api` crate of
//! anna-rs (`anna_api::lattice::SetLattice`, `anna_api::ClientKey`, ...).
//! With this crate as their `anna-api` dependency they compile unchanged: it
//! re-exports the same types from [`essa_api`].

pub use essa_api::lattice;
pub use essa_api::lattice::LatticeTypeError;
pub use essa_api::{ClientKey, LatticeValue};
