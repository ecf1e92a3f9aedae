//! word-count: counts words, one remote call per line, and keeps the
//! vocabulary it has seen in the key-value store. The same functions and
//! main as the C example (examples/word-count/word_count.c): a caller cannot
//! tell them apart.
//!
//! - `count_words(text) -> u64`: the number of words in `text` (a word is a
//!   maximal run of ASCII letters, digits and apostrophes, lower-cased);
//!   merges every distinct word into the Set under the state key "vocab".
//! - `count_lines(text) -> u64`: starts one remote call of `count_words` per
//!   non-empty line (all of them before waiting for any), returns the sum.
//! - `vocabulary() -> Vec<String>`: the "vocab" set, sorted by byte value.
//!
//! A function that cannot do its job panics, so its caller gets
//! `UnknownError`, as the C functions trap.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::process::exit;

use essa_api::essa_wrap;
use essa_api::lattice::{Lattice, SetLattice};
use essa_api::ClientKey;

const VOCAB_KEY: &str = "vocab";

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'\''
}

/// Counts the words of `text` and merges the distinct ones into "vocab".
#[essa_wrap(name = "count_words_remote")]
pub fn count_words(text: String) -> u64 {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&[u8]> = lower
        .as_bytes()
        .split(|byte| !is_word_byte(*byte))
        .filter(|word| !word.is_empty())
        .collect();
    if !words.is_empty() {
        let distinct: BTreeSet<Vec<u8>> = words.iter().map(|word| word.to_vec()).collect();
        let key: ClientKey = VOCAB_KEY.into();
        if let Err(error) = essa_api::kvs_put(&key, &SetLattice::new(distinct.into_iter().collect()).into()) {
            panic!("count_words: merging the words into \"{}\" failed: {:?}", VOCAB_KEY, error);
        }
    }
    words.len() as u64
}

/// Counts the words of every non-empty line remotely, all lines at once.
#[essa_wrap(name = "count_lines_remote")]
pub fn count_lines(text: String) -> u64 {
    let calls: Vec<_> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            count_words_remote(line.to_string())
                .unwrap_or_else(|e| panic!("count_lines: starting a remote call failed: {:?}", e))
        })
        .collect();
    calls
        .into_iter()
        .map(|call| {
            call.get()
                .unwrap_or_else(|e| panic!("count_lines: a remote call of count_words failed: {:?}", e))
        })
        .sum()
}

/// The words in "vocab", sorted by byte value (none if nothing was counted).
#[essa_wrap(name = "vocabulary_remote")]
pub fn vocabulary() -> Vec<String> {
    let key: ClientKey = VOCAB_KEY.into();
    let value = match essa_api::kvs_try_get(&key) {
        Ok(None) => return Vec::new(),
        Ok(Some(value)) => value,
        Err(e) => panic!("vocabulary: reading the set under \"{}\" failed: {:?}", VOCAB_KEY, e),
    };
    let set = value
        .into_set()
        .unwrap_or_else(|e| panic!("vocabulary: \"{}\" does not hold a Set: {}", VOCAB_KEY, e));
    let sorted: BTreeSet<Vec<u8>> = set.into_revealed().into_iter().collect();
    sorted
        .into_iter()
        .map(|word| String::from_utf8(word).expect("vocabulary: a word is not UTF-8"))
        .collect()
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog.\n\
                    The dog sleeps; the fox doesn't.\n\
                    \n\
                    It's 2 o'clock, and 2 foxes jump: \"Quick!\"\n";

/// Reports a failed step of main on stderr and exits with status 1.
fn fail(what: &str, error: impl Display) -> ! {
    eprintln!("word-count: {} failed: {}", what, error);
    exit(1)
}

fn main() {
    let words = count_lines_remote(TEXT.to_string())
        .and_then(|call| call.get())
        .unwrap_or_else(|e| fail("count_lines", format!("{:?}", e)));
    println!("words: {}", words);
    let vocabulary = vocabulary_remote()
        .and_then(|call| call.get())
        .unwrap_or_else(|e| fail("vocabulary", format!("{:?}", e)));
    println!("vocabulary: {} words", vocabulary.len());
}
