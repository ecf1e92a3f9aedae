//! [`RemoteFunctionResult`]: the typed handle the `#[essa_wrap]` remote-call
//! functions return.

use crate::{EssaResult, ResultHandle};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// The result of a remote call, which may not be there yet.
///
/// [`get`](Self::get) waits for it and decodes it as a `T`.
#[must_use = "a remote call's result is only waited for with .get()"]
#[derive(Debug)]
pub struct RemoteFunctionResult<T> {
    handle: ResultHandle,
    data: PhantomData<fn() -> T>,
}

impl<T> RemoteFunctionResult<T> {
    /// Wraps the handle of a call whose result is a bincode-encoded `T`.
    ///
    /// If the result is of another type, [`get`](Self::get) fails with
    /// `InvalidResult`.
    pub fn new(handle: ResultHandle) -> Self {
        Self {
            handle,
            data: PhantomData,
        }
    }

    /// Waits until the remote call ends and returns its decoded result.
    ///
    /// `NoResult` if the callee set no result, `UnknownError` if it trapped
    /// (e.g. panicked), `InvalidResult` if the result is not a `T`.
    pub fn get(self) -> Result<T, EssaResult>
    where
        T: DeserializeOwned,
    {
        let bytes = self.handle.wait()?;
        bincode::deserialize(&bytes).map_err(|_| EssaResult::InvalidResult)
    }
}
