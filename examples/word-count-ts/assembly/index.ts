// word-count in TypeScript (AssemblyScript): counts words, one remote call per
// line, and keeps the vocabulary it has seen in the key-value store. The same
// functions and main as the C example (examples/word-count/word_count.c) and
// the Rust one: a caller cannot tell them apart.
//
// - count_words(text) -> u64: the number of words in `text` (a word is a
//   maximal run of ASCII letters, digits and apostrophes, lower-cased);
//   merges every distinct word into the Set under the state key "vocab".
// - count_lines(text) -> u64: starts one remote call of count_words per
//   non-empty line (all of them before waiting for any), returns the sum.
// - vocabulary() -> list<string>: the "vocab" set, sorted by byte value.
//
// A function that cannot do its job aborts (a line on stderr, then a trap),
// so its caller gets UnknownError, as the C functions trap.
// Build: npm install && npm run build (examples/build_ts.py checks the bytes).

import { Call, EssaResult, SetLattice, compareBytes, exit, getLattice, putLattice, resultName } from "@essa/as";

const VOCAB_KEY = "vocab";

function isWordByte(c: u32): bool {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x27;
}

// The text count_words is sorting the words of (compareWords has no closure to see it in).
let wordsBase: usize = 0;

// Byte order of two words, each (start << 32 | length) in the text at wordsBase.
function compareWords(a: u64, b: u64): i32 {
  const aLength = <i32>(a & 0xffffffff);
  const bLength = <i32>(b & 0xffffffff);
  const c = memory.compare(wordsBase + <usize>(a >>> 32), wordsBase + <usize>(b >>> 32), <usize>min(aLength, bLength));
  return c != 0 ? c : aLength - bLength;
}

/** Counts the words of `text` and merges the distinct ones into "vocab". */
@essa("count_words")
export function countWords(text: string): u64 {
  const bytes = Uint8Array.wrap(String.UTF8.encode(text));
  // Each word as (start << 32 | length): no object per word.
  const words = new Array<u64>(0);
  let i = 0;
  while (i < bytes.length) {
    if (!isWordByte(bytes[i])) {
      i++;
      continue;
    }
    const start = i;
    for (; i < bytes.length && isWordByte(bytes[i]); i++) {
      if (bytes[i] >= 0x41 && bytes[i] <= 0x5a) bytes[i] += 0x20; // lower-case ASCII
    }
    words.push((<u64>start << 32) | <u64>(i - start));
  }
  if (words.length > 0) {
    // Merge the distinct words into the vocabulary (a Set: union with what is there).
    wordsBase = bytes.dataStart;
    const sorted = words.slice(0);
    sorted.sort(compareWords);
    const distinct = new Array<Uint8Array>(0);
    for (let k = 0; k < sorted.length; k++) {
      if (k > 0 && compareWords(sorted[k - 1], sorted[k]) == 0) continue;
      const start = <i32>(sorted[k] >>> 32);
      distinct.push(bytes.subarray(start, start + <i32>(sorted[k] & 0xffffffff)));
    }
    const rc = putLattice(VOCAB_KEY, new SetLattice(distinct));
    if (rc != EssaResult.Ok) abort("count_words: merging the words into \"" + VOCAB_KEY + "\" failed: " + resultName(rc));
  }
  return <u64>words.length;
}

/** Counts the words of every non-empty line remotely, all lines at once. */
@essa("count_lines")
export function countLines(text: string): u64 {
  const lines = text.split("\n");
  const calls = new Array<Call<u64>>(0);
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    if (line.endsWith("\r")) line = line.substring(0, line.length - 1);
    if (line.length > 0) calls.push(countWordsRemote(line));
  }
  let total: u64 = 0;
  for (let i = 0; i < calls.length; i++) total += calls[i].get();
  return total;
}

/** The words in "vocab", sorted by byte value (none if nothing was counted). */
@essa("vocabulary")
export function vocabulary(): Array<string> {
  const value = getLattice(VOCAB_KEY);
  if (value == null) return [];
  if (!(value instanceof SetLattice)) abort("vocabulary: \"" + VOCAB_KEY + "\" does not hold a Set");
  const members = (value as SetLattice).members.slice(0);
  members.sort(compareBytes);
  return new SetLattice(members).strings();
}

const TEXT = "The quick brown fox jumps over the lazy dog.\nThe dog sleeps; the fox doesn't.\n\nIt's 2 o'clock, and 2 foxes jump: \"Quick!\"\n";

function main(): void {
  const words = countLinesRemote(TEXT);
  if (words.wait() != EssaResult.Ok) fail("count_lines", words.wait());
  console.log("words: " + words.get().toString());
  const vocabulary = vocabularyRemote();
  if (vocabulary.wait() != EssaResult.Ok) fail("vocabulary", vocabulary.wait());
  console.log("vocabulary: " + vocabulary.get().length.toString() + " words");
}

/** Reports a failed step of main on stderr and exits with status 1. */
function fail(what: string, rc: EssaResult): void {
  console.error("word-count: " + what + " failed: " + resultName(rc));
  exit(1);
}
