//! The essa test function in Rust: the module's `_start`.
//!
//! Calls the functions of the library remotely, stores and merges sets in
//! the key-value store, and runs a recursive fan-out of 130 remote calls
//! that all merge into one set. Behaves and prints exactly like the C test
//! function (examples/test-function/test_function.c): on any failure it
//! names the failed step on stderr and exits with status 1.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::io::Write;
use std::ops::Range;
use std::process::exit;

use anna_api::lattice::{Lattice, SetLattice};
use anna_api::ClientKey;
use essa_api::EssaResult;
use essa_test_function::{
    append_foo, concurrent_kvs_test_extern, repeat_string_extern, to_uppercase_extern,
};

const SET_KEY: &str = "some-test-key";
const CONCURRENT_KEY: &str = "concurrent-kvs_test-key";
const CONCURRENT_RANGE: Range<usize> = 48..113;

/// Reports a failed step on stderr and exits with status 1.
fn fail(message: impl Display) -> ! {
    let _ = std::io::stdout().flush();
    eprintln!("test function: {}", message);
    exit(1)
}

/// Reports a step that failed with an essa result code and exits with status 1.
fn failed(what: impl Display, error: EssaResult) -> ! {
    fail(format_args!("{} failed: {:?} ({})", what, error, i32::from(error)))
}

fn put_set(key: &ClientKey, members: [&str; 3], what: &str) {
    let set = SetLattice::new(members.iter().map(|m| m.as_bytes().to_vec()).collect());
    essa_api::kvs_put(key, &set.into())
        .unwrap_or_else(|e| failed(format_args!("{} under key \"{}\" (essa_put_lattice)", what, key), e));
}

/// Reads the set under `key` (waiting for it to exist) and prints it sorted:
/// `Result: {"a", "b"}`.
fn print_set(key: &ClientKey) {
    let what = format!("reading the set under key \"{}\"", key);
    let value = essa_api::kvs_get(key).unwrap_or_else(|e| failed(&what, e));
    let set = value
        .into_set()
        .unwrap_or_else(|e| fail(format_args!("{}: {}", what, e)))
        .into_revealed();
    let members = set
        .iter()
        .map(|member| std::str::from_utf8(member))
        .collect::<Result<BTreeSet<_>, _>>()
        .unwrap_or_else(|e| fail(format_args!("{}: a member is not UTF-8: {}", what, e)));
    println!("Result: {:?}", members);
}

/// Checks that the set under `key` holds exactly the decimal numbers of
/// `CONCURRENT_RANGE`.
fn check_concurrent_set(key: &ClientKey) {
    let what = format!("reading the concurrent KVS test set under key \"{}\"", key);
    let value = match essa_api::kvs_try_get(key) {
        Ok(Some(value)) => value,
        Ok(None) => failed(&what, EssaResult::NotFound),
        Err(e) => failed(&what, e),
    };
    let set = value
        .into_set()
        .unwrap_or_else(|e| fail(format_args!("{}: {}", what, e)))
        .into_revealed();

    let mut ok = true;
    let expected_count = CONCURRENT_RANGE.len();
    if set.len() != expected_count {
        eprintln!(
            "test function: concurrent KVS test set has {} members, expected {} (the decimal strings of {}..{})",
            set.len(),
            expected_count,
            CONCURRENT_RANGE.start,
            CONCURRENT_RANGE.end - 1
        );
        ok = false;
    }
    let mut seen = BTreeSet::new();
    for member in &set {
        // only the canonical decimal form of a number in the range is expected
        let number = std::str::from_utf8(member)
            .ok()
            .and_then(|text| text.parse::<usize>().ok().filter(|n| n.to_string() == text))
            .filter(|n| CONCURRENT_RANGE.contains(n));
        match number {
            Some(n) => {
                seen.insert(n);
            }
            None => {
                eprintln!(
                    "test function: concurrent KVS test set has an unexpected member {:?}",
                    String::from_utf8_lossy(member)
                );
                ok = false;
            }
        }
    }
    for n in CONCURRENT_RANGE.filter(|n| !seen.contains(n)) {
        eprintln!("test function: concurrent KVS test set lacks \"{}\"", n);
        ok = false;
    }
    if !ok {
        fail("concurrent KVS test result check failed");
    }
}

fn main() {
    println!("Hello world from test function!");

    // 1. a remote call
    let result = to_uppercase_extern("foobar".into())
        .unwrap_or_else(|e| failed("calling to_uppercase (essa_call)", e));
    println!("Waiting for result...");
    let result = result
        .get()
        .unwrap_or_else(|e| failed("waiting for the result of to_uppercase", e));
    println!("Function result: {:?}", result);

    // 2. store a set
    println!("Storing a set in the kvs");
    let key: ClientKey = SET_KEY.into();
    put_set(&key, ["one", "two", "three"], "storing a set");

    // 3. call with the previous result
    let result = append_foo(result).unwrap_or_else(|e| failed("calling foo (essa_call)", e));
    println!("Waiting for result...");
    let result = result
        .get()
        .unwrap_or_else(|e| failed("waiting for the result of foo", e));
    println!("Function result: {}", result);

    // 4. read the set back
    println!("Reading the set from the kvs");
    print_set(&key);

    // 5. merge more members into it
    println!("Appending to the set in the kvs");
    put_set(&key, ["four", "two", "three"], "appending to the set");

    // 6. a call with two parameters and a large result
    let result = repeat_string_extern(result, 15000)
        .unwrap_or_else(|e| failed("calling repeat_string (essa_call)", e));
    println!("Waiting for result...");
    let result = result
        .get()
        .unwrap_or_else(|e| failed("waiting for the result of repeat_string", e));
    println!("Function result: {}", result.len());

    // 7. read the merged set
    println!("Reading the set from the kvs");
    print_set(&key);

    // 8. a recursive fan-out of remote calls merging into one set
    println!("Running concurrent KVS test");
    let key: ClientKey = CONCURRENT_KEY.into();
    let result =
        concurrent_kvs_test_extern(key.clone(), CONCURRENT_RANGE.start, CONCURRENT_RANGE.end)
            .unwrap_or_else(|e| failed("calling concurrent_kvs_test (essa_call)", e));
    match result.get() {
        Ok(Ok(())) => {}
        Ok(Err(message)) => fail(format_args!("concurrent_kvs_test returned Err: {}", message)),
        Err(e) => failed("waiting for the result of concurrent_kvs_test", e),
    }

    // 9. check it
    println!("Reading the concurrent KVS test result set from the kvs");
    check_concurrent_set(&key);

    println!("DONE");
}
