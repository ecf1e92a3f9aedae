//! The remotely callable functions of the essa test function.
//!
//! `#[essa_wrap(name = "x")]` keeps the function as it is (it can still be
//! called locally) and adds `x(...)`, which runs it remotely on an essa
//! executor and returns a handle; `.get()` on the handle waits for the
//! result. This is essa-rs's test-function library, written against the
//! same APIs (`essa_api`, `anna_api`).

use anna_api::lattice::SetLattice;
use essa_api::essa_wrap;

/// Upper-cases ASCII letters.
#[essa_wrap(name = "to_uppercase_extern")]
pub fn to_uppercase(val: String) -> String {
    val.to_ascii_uppercase()
}

/// Appends `" fooo"`.
#[essa_wrap(name = "append_foo")]
pub fn foo(val: String) -> String {
    val + " fooo"
}

/// Repeats `string` `count` times (a function with several parameters).
#[essa_wrap(name = "repeat_string_extern")]
pub fn repeat_string(string: String, count: usize) -> String {
    string.repeat(count)
}

/// Merges the set `{n}` (n in decimal) into the value under `key` for every
/// n in `range_start..range_end`, recursively: a range of one number is
/// stored directly; a larger one is split in halves and both halves run as
/// remote calls (both started before waiting on either). Sets merge by
/// union, so the key ends up holding the whole range.
#[essa_wrap(name = "concurrent_kvs_test_extern")]
pub fn concurrent_kvs_test(
    key: anna_api::ClientKey,
    range_start: usize,
    range_end: usize,
) -> Result<(), String> {
    let range_size = range_end
        .checked_sub(range_start)
        .ok_or("concurrent_kvs_test: range_end is smaller than range_start")?;
    match range_size {
        0 => {}
        1 => essa_api::kvs_put(
            &key,
            &SetLattice::new([range_start.to_string().into()].into()).into(),
        )
        .map_err(|e| format!("concurrent_kvs_test: essa_put_lattice failed: {:?}", e))?,
        _ => {
            let mid = range_start + range_size / 2;
            let call_failed = |e: essa_api::EssaResult| format!("concurrent_kvs_test: essa_call failed: {:?}", e);
            let first = concurrent_kvs_test_extern(key.clone(), range_start, mid)
                .map_err(call_failed)?;
            let second = concurrent_kvs_test_extern(key, mid, range_end).map_err(call_failed)?;

            let wait_failed = |e: essa_api::EssaResult| {
                format!("concurrent_kvs_test: waiting for a nested call failed: {:?}", e)
            };
            // an Err of a nested call is passed on as it is
            first.get().map_err(wait_failed)??;
            second.get().map_err(wait_failed)??;
        }
    }
    Ok(())
}
