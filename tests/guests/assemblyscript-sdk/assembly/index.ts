// The SDK's tests: functions that tests/guests/test_assemblyscript_sdk.py
// calls from Python, checking their bytes against essa's own encoders.

import {
  EssaResult,
  LwwLattice,
  MultiCausalLattice,
  OrderedSetLattice,
  SetLattice,
  SingleCausalLattice,
  VectorClock,
  decodeLattice,
  formatTimestamp,
  getLattice,
  putLattice,
} from "@essa/as";

function utf8(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

function clock(node: string, counter: u64): VectorClock {
  const c = new Map<string, u64>();
  c.set(node, counter);
  return c;
}

// The worked examples of docs/lattice-encoding.md, in its order.
function examples(): Array<Uint8Array> {
  const dependencies = new Map<string, VectorClock>();
  dependencies.set("k", clock("n", 7));
  return [
    new SetLattice([utf8("a")]).encode(),
    new LwwLattice("2026-11-24T04:28:17.057686123Z", utf8("hi")).encode(),
    new LwwLattice("2026-11-24T04:28:17.057Z", new Uint8Array(0)).encode(),
    new OrderedSetLattice([utf8("b"), utf8("ab"), utf8("a")]).encode(),
    new SingleCausalLattice(clock("n", 7), [utf8("x")]).encode(),
    new MultiCausalLattice(clock("n", 7), dependencies, []).encode(),
    new SetLattice([utf8("one"), utf8("two")]).encode(),
  ];
}

@essa
export function lattice_examples(): Array<Uint8Array> {
  return examples();
}

/** Puts every example under "ex0", "ex1", ...: the host decodes and stores them. */
@essa
export function put_examples(): u32 {
  const all = examples();
  for (let i = 0; i < all.length; i++) {
    const rc = putLattice("ex" + i.toString(), decodeLattice(all[i]));
    if (rc != EssaResult.Ok) abort("put_examples: ex" + i.toString() + " refused");
  }
  return all.length;
}

/** Decodes and encodes again. */
@essa
export function roundtrip(value: Uint8Array): Uint8Array {
  return decodeLattice(value, "roundtrip's value").encode();
}

/** The value under `key` as the guest reads it, encoded again; null if none. */
@essa
export function read(key: string): Uint8Array | null {
  const value = getLattice(key);
  return value == null ? null : value.encode();
}

/** A put of another lattice type over a Set: refused, with the code. */
@essa
export function put_conflict(key: string): i32 {
  return putLattice(key, LwwLattice.now(utf8("x")));
}

@essa
export function lww_now(): string {
  return (LwwLattice.now(new Uint8Array(0))).timestamp;
}

@essa
export function timestamp(nanos: u64): string {
  return formatTimestamp(nanos);
}

// Every signature type, there and back.
@essa export function echo_bool(x: bool): bool { return x; }
@essa export function echo_i8(x: i8): i8 { return x; }
@essa export function echo_u16(x: u16): u16 { return x; }
@essa export function echo_i32(x: i32): i32 { return x; }
@essa export function echo_u64(x: u64): u64 { return x; }
@essa export function echo_i64(x: i64): i64 { return x; }
@essa export function echo_f32(x: f32): f32 { return x; }
@essa export function echo_f64(x: f64): f64 { return x; }
@essa export function echo_string(x: string): string { return x; }
@essa export function echo_bytes(x: Uint8Array): Uint8Array { return x; }
@essa export function echo_option(x: string | null): string | null { return x; }
@essa export function echo_list(x: Array<u32>): Array<u32> { return x; }
@essa export function echo_map(x: Map<string, i64>): Map<string, i64> { return x; }
@essa export function echo_nested(x: Array<Array<string> | null>): Array<Array<string> | null> { return x; }

/** Several parameters, and a call of another function through its handle. */
@essa("describe")
export function describePair(count: u8, label: string, ratio: f64): string {
  return label + " x" + count.toString() + " @" + ratio.toString() + " " + echo_stringRemote(label).get();
}

@essa
export function nothing(): void {}

@essa
export function fails(): u64 {
  abort("fails: on purpose");
  return 0;
}

@essa
export function noisy(): void {
  console.log("from noisy");
  console.error("noisy on stderr");
}

function main(): void {
  console.log("main starts");
  noisyRemote().get();
  nothingRemote().get();
  const failed = failsRemote();
  console.log("fails: " + (failed.wait() == EssaResult.UnknownError ? "UnknownError" : "?"));
  console.error("main ends");
}
