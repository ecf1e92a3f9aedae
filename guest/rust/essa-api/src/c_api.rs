//! The raw guest ABI: the eight functions the essa host provides to a module.
//!
//! They are imported from the Wasm import module `host`. Every parameter and
//! return value is an `i32` (wasm32 pointers and `usize` are 32 bits wide);
//! lengths and handles the host writes into guest memory are `u32` little
//! endian. Each function returns an [`EssaResult`](crate::EssaResult) code.
//!
//! Data flows into the guest in two steps, because the host cannot allocate
//! guest memory: the guest first asks for the length (`*_len`), allocates a
//! buffer, then asks the host to fill it. Data flows out of the guest as a
//! pointer and a length, which the host copies before returning.
//!
//! Prefer the safe wrappers of the crate root ([`get_args_raw`](crate::get_args_raw),
//! [`set_result`](crate::set_result), [`call_function`](crate::call_function),
//! [`kvs_put`](crate::kvs_put), [`kvs_try_get`](crate::kvs_try_get), ...).
//!
//! Outside WebAssembly (e.g. in `cargo test` on the build machine) the
//! functions exist so that code compiles and links, but they panic when
//! called: there is no essa host there.

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "host")]
extern "C" {
    /// Copies the current call's argument bytes to `args_ptr`.
    ///
    /// `args_len` is the capacity of the buffer; it must be at least the
    /// argument length the runtime passed to the called function, else the
    /// result is `BufferTooSmall`.
    pub fn essa_get_args(args_ptr: *mut u8, args_len: usize) -> i32;

    /// Sets the bytes the current call returns to its caller (once per call).
    pub fn essa_set_result(ptr: *const u8, len: usize) -> i32;

    /// Starts a remote call of the export `function_name` (UTF-8) of this
    /// module with the given argument bytes and writes a handle for its
    /// result to `result_handle`.
    ///
    /// `NoSuchFunction` if there is no such export, `InvalidFunctionSignature`
    /// if its type is not `(i32) -> ()`.
    pub fn essa_call(
        function_name_ptr: *const u8,
        function_name_len: usize,
        args_ptr: *const u8,
        args_len: usize,
        result_handle: *mut usize,
    ) -> i32;

    /// Waits until the call behind `result_handle` ends and writes the length
    /// of its result to `value_len_ptr`.
    ///
    /// `NotFound` for an unknown handle, `NoResult` if the callee returned
    /// without setting a result, `UnknownError` if it trapped.
    pub fn essa_get_result_len(result_handle: usize, value_len_ptr: *mut usize) -> i32;

    /// Waits until the call behind `result_handle` ends, copies its result to
    /// `value_ptr` and its length to `value_len_ptr`, and forgets the handle.
    ///
    /// `BufferTooSmall` (the handle stays valid) if `value_capacity` is less
    /// than the result length.
    pub fn essa_get_result(
        result_handle: usize,
        value_ptr: *mut u8,
        value_capacity: usize,
        value_len_ptr: *mut usize,
    ) -> i32;

    /// Merges a bincode-encoded [`LatticeValue`](crate::LatticeValue) into the
    /// value stored under the UTF-8 key.
    ///
    /// `UnknownError` (and nothing changes) if the bytes are not a lattice
    /// value or the key holds a lattice of another type.
    pub fn essa_put_lattice(
        key_ptr: *const u8,
        key_len: usize,
        value_ptr: *const u8,
        value_len: usize,
    ) -> i32;

    /// Writes the length of the encoded value stored under the key to
    /// `value_len_ptr`; `NotFound` if the key has no value.
    pub fn essa_get_lattice_len(key_ptr: *const u8, key_len: usize, value_len_ptr: *mut usize)
        -> i32;

    /// Copies the encoded value stored under the key to `value_ptr` and its
    /// length to `value_len_ptr`; `NotFound` if the key has no value,
    /// `BufferTooSmall` if `value_capacity` is less than its length.
    pub fn essa_get_lattice_data(
        key_ptr: *const u8,
        key_len: usize,
        value_ptr: *mut u8,
        value_capacity: usize,
        value_len_ptr: *mut usize,
    ) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
pub use self::native::*;

/// Stand-ins with the same signatures for builds outside WebAssembly.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    #![allow(missing_docs, clippy::missing_safety_doc)]

    fn no_host(function: &str) -> ! {
        panic!(
            "{}: the essa host functions exist only inside a WebAssembly module run by essa \
             (build with --target wasm32-wasi and run it with `essa run`)",
            function
        )
    }

    pub unsafe extern "C" fn essa_get_args(_args_ptr: *mut u8, _args_len: usize) -> i32 {
        no_host("essa_get_args")
    }

    pub unsafe extern "C" fn essa_set_result(_ptr: *const u8, _len: usize) -> i32 {
        no_host("essa_set_result")
    }

    pub unsafe extern "C" fn essa_call(
        _function_name_ptr: *const u8,
        _function_name_len: usize,
        _args_ptr: *const u8,
        _args_len: usize,
        _result_handle: *mut usize,
    ) -> i32 {
        no_host("essa_call")
    }

    pub unsafe extern "C" fn essa_get_result_len(
        _result_handle: usize,
        _value_len_ptr: *mut usize,
    ) -> i32 {
        no_host("essa_get_result_len")
    }

    pub unsafe extern "C" fn essa_get_result(
        _result_handle: usize,
        _value_ptr: *mut u8,
        _value_capacity: usize,
        _value_len_ptr: *mut usize,
    ) -> i32 {
        no_host("essa_get_result")
    }

    pub unsafe extern "C" fn essa_put_lattice(
        _key_ptr: *const u8,
        _key_len: usize,
        _value_ptr: *const u8,
        _value_len: usize,
    ) -> i32 {
        no_host("essa_put_lattice")
    }

    pub unsafe extern "C" fn essa_get_lattice_len(
        _key_ptr: *const u8,
        _key_len: usize,
        _value_len_ptr: *mut usize,
    ) -> i32 {
        no_host("essa_get_lattice_len")
    }

    pub unsafe extern "C" fn essa_get_lattice_data(
        _key_ptr: *const u8,
        _key_len: usize,
        _value_ptr: *mut u8,
        _value_capacity: usize,
        _value_len_ptr: *mut usize,
    ) -> i32 {
        no_host("essa_get_lattice_data")
    }
}
