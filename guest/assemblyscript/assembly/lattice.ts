// Lattice values as guests put and get them, in the bytes of
// docs/lattice-encoding.md (serde + bincode 1.x of essa-rs's LatticeValue):
// a u32 tag, then the payload. Tags 5 to 7 are the host's own; a guest can
// neither put nor decode them.

import { Reader, Writer, validUtf8 } from "./bincode";
import { clock_time_get } from "./host";

/** A vector clock: node id -> counter. */
export type VectorClock = Map<string, u64>;

/** A state value: one of the five guest lattices. `encode()` gives its bytes, `decodeLattice` reads them. */
export abstract class LatticeValue {
  /** The variant tag (0 Lww, 1 Set, 2 OrderedSet, 3 SingleCausal, 4 MultiCausal). */
  abstract get tag(): u32;

  /** Writes the payload after the tag. */
  protected abstract writePayload(w: Writer): void;

  /** The value's bytes (tag and payload). */
  encode(): Uint8Array {
    const w = new Writer();
    w.u32(this.tag);
    this.writePayload(w);
    return w.finish();
  }
}

/** Last writer wins: the value with the larger timestamp (RFC 3339 text, as chrono writes it). */
export class LwwLattice extends LatticeValue {
  constructor(public timestamp: string, public value: Uint8Array) {
    super();
  }

  /** `value` stamped with the current time. */
  static now(value: Uint8Array): LwwLattice {
    return new LwwLattice(formatTimestamp(nowNanos()), value);
  }

  get tag(): u32 {
    return 0;
  }

  protected writePayload(w: Writer): void {
    w.string(this.timestamp);
    w.bytes(this.value);
  }
}

/** A grow-only set of byte strings; merges are unions. */
export class SetLattice extends LatticeValue {
  constructor(public members: Array<Uint8Array> = []) {
    super();
  }

  /** A set of the UTF-8 of each string. */
  static ofStrings(items: Array<string>): SetLattice {
    return new SetLattice(utf8All(items));
  }

  /** The members as strings (each must be UTF-8; fails the call if one is not). */
  strings(): Array<string> {
    return stringsOf(this.members, "a member of a Set");
  }

  get tag(): u32 {
    return 1;
  }

  protected writePayload(w: Writer): void {
    writeMembers(w, this.members);
  }
}

/** A set whose members are kept in ascending byte order. */
export class OrderedSetLattice extends LatticeValue {
  constructor(public members: Array<Uint8Array> = []) {
    super();
  }

  static ofStrings(items: Array<string>): OrderedSetLattice {
    return new OrderedSetLattice(utf8All(items));
  }

  strings(): Array<string> {
    return stringsOf(this.members, "a member of an OrderedSet");
  }

  get tag(): u32 {
    return 2;
  }

  protected writePayload(w: Writer): void {
    writeMembers(w, sortedDistinct(this.members));
  }
}

/** Values under a vector clock: a dominated side is dropped, concurrent sides are unioned. */
export class SingleCausalLattice extends LatticeValue {
  constructor(public clock: VectorClock = new Map<string, u64>(), public values: Array<Uint8Array> = []) {
    super();
  }

  get tag(): u32 {
    return 3;
  }

  protected writePayload(w: Writer): void {
    w.write<VectorClock>(this.clock);
    writeMembers(w, this.values);
  }
}

/** Like SingleCausalLattice, with the clocks of the keys the values depend on. */
export class MultiCausalLattice extends LatticeValue {
  constructor(
    public clock: VectorClock = new Map<string, u64>(),
    public dependencies: Map<string, VectorClock> = new Map<string, VectorClock>(),
    public values: Array<Uint8Array> = [],
  ) {
    super();
  }

  get tag(): u32 {
    return 4;
  }

  protected writePayload(w: Writer): void {
    w.write<VectorClock>(this.clock);
    w.write<Map<string, VectorClock>>(this.dependencies);
    writeMembers(w, this.values);
  }
}

/** Decodes a value's bytes; fails the call (naming `what`) if they are not a guest lattice. */
export function decodeLattice(bytes: Uint8Array, what: string = "a lattice value"): LatticeValue {
  const r = new Reader(bytes, what);
  const tag = r.u32();
  if (tag == 0) {
    const timestamp = r.string();
    return new LwwLattice(timestamp, r.bytes());
  }
  if (tag == 1) return new SetLattice(r.read<Array<Uint8Array>>());
  if (tag == 2) return new OrderedSetLattice(r.read<Array<Uint8Array>>());
  if (tag == 3) {
    const clock = r.read<VectorClock>();
    return new SingleCausalLattice(clock, r.read<Array<Uint8Array>>());
  }
  if (tag != 4) abort(what + " has the lattice tag " + tag.toString() + ", not a guest lattice (0 to 4)");
  const clock = r.read<VectorClock>();
  const dependencies = r.read<Map<string, VectorClock>>();
  return new MultiCausalLattice(clock, dependencies, r.read<Array<Uint8Array>>());
}

function writeMembers(w: Writer, members: Array<Uint8Array>): void {
  w.u64(<u64>members.length);
  for (let i = 0; i < members.length; i++) w.bytes(unchecked(members[i]));
}

function utf8All(items: Array<string>): Array<Uint8Array> {
  const out = new Array<Uint8Array>(items.length);
  for (let i = 0; i < items.length; i++) out[i] = Uint8Array.wrap(String.UTF8.encode(items[i]));
  return out;
}

function stringsOf(members: Array<Uint8Array>, what: string): Array<string> {
  const out = new Array<string>(members.length);
  for (let i = 0; i < members.length; i++) {
    const member = members[i];
    if (!validUtf8(member.dataStart, member.length)) abort(what + " is not UTF-8");
    out[i] = String.UTF8.decodeUnsafe(member.dataStart, <usize>member.length);
  }
  return out;
}

/** Byte order: the first differing byte decides; a prefix comes first. */
export function compareBytes(a: Uint8Array, b: Uint8Array): i32 {
  const n = min(a.length, b.length);
  const c = memory.compare(a.dataStart, b.dataStart, <usize>n);
  if (c != 0) return c;
  return a.length - b.length;
}

/** The members sorted by bytes, without duplicates. */
export function sortedDistinct(members: Array<Uint8Array>): Array<Uint8Array> {
  const sorted = members.slice(0);
  sorted.sort(compareBytes);
  const out = new Array<Uint8Array>(0);
  for (let i = 0; i < sorted.length; i++) {
    if (out.length == 0 || compareBytes(out[out.length - 1], unchecked(sorted[i])) != 0) out.push(unchecked(sorted[i]));
  }
  return out;
}

/** The current time (WASI's realtime clock) in nanoseconds since 1970. */
export function nowNanos(): u64 {
  const box = memory.data(8);
  if (clock_time_get(0, 1, box) != 0) abort("clock_time_get failed");
  return load<u64>(box);
}

/**
 * RFC 3339 in UTC as chrono writes a DateTime<Utc> (docs/lattice-encoding.md,
 * "LWW timestamps"): no fraction for whole seconds, else 3, 6 or 9 digits.
 */
export function formatTimestamp(nanos: u64): string {
  const seconds = nanos / 1_000_000_000;
  const fraction = <u32>(nanos % 1_000_000_000);
  const days = <i64>(seconds / 86400);
  const rest = <u32>(seconds % 86400);
  // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
  const z = days + 719468;
  const era = z / 146097;
  const doe = z - era * 146097;
  const yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const mp = (5 * doy + 2) / 153;
  const day = doy - (153 * mp + 2) / 5 + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  let text = pad(<u32>year, 4) + "-" + pad(<u32>month, 2) + "-" + pad(<u32>day, 2) + "T" +
    pad(rest / 3600, 2) + ":" + pad((rest / 60) % 60, 2) + ":" + pad(rest % 60, 2);
  if (fraction != 0) {
    if (fraction % 1_000_000 == 0) text += "." + pad(fraction / 1_000_000, 3);
    else if (fraction % 1000 == 0) text += "." + pad(fraction / 1000, 6);
    else text += "." + pad(fraction, 9);
  }
  return text + "Z";
}

function pad(n: u32, width: i32): string {
  return n.toString().padStart(width, "0");
}
