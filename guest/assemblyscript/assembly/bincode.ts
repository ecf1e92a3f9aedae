// bincode 1.x, serde's default configuration: the bytes of arguments, results
// and lattice values (docs/abi.md, "Arguments and results"; docs/signatures.md,
// "Types"). Integers are fixed width and little-endian (Wasm's own order, so a
// plain store/load writes them); lengths and counts are u64.

/** Builds bincode bytes: `write<T>(value)` for any signature type, or one piece at a time. */
export class Writer {
  private buf: Uint8Array;
  private len: i32 = 0;

  constructor(capacity: i32 = 64) {
    this.buf = new Uint8Array(capacity > 0 ? capacity : 8);
  }

  /** How many bytes were written. */
  get length(): i32 {
    return this.len;
  }

  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  // Room for `n` more bytes: the address to write them at.
  private reserve(n: i32): usize {
    const need = this.len + n;
    if (need > this.buf.length) {
      let capacity = this.buf.length << 1;
      while (capacity < need) capacity <<= 1;
      const bigger = new Uint8Array(capacity);
      memory.copy(bigger.dataStart, this.buf.dataStart, <usize>this.len);
      this.buf = bigger;
    }
    const at = this.buf.dataStart + <usize>this.len;
    this.len = need;
    return at;
  }

  u8(value: u8): void {
    store<u8>(this.reserve(1), value);
  }

  u32(value: u32): void {
    store<u32>(this.reserve(4), value);
  }

  u64(value: u64): void {
    store<u64>(this.reserve(8), value);
  }

  /** Bytes as they are, with no length in front. */
  raw(data: Uint8Array): void {
    memory.copy(this.reserve(data.length), data.dataStart, <usize>data.length);
  }

  /** A `bytes` (`Vec<u8>`): a u64 length, then the bytes. */
  bytes(data: Uint8Array): void {
    this.u64(<u64>data.length);
    this.raw(data);
  }

  /** A `string`: a u64 length, then its UTF-8. */
  string(text: string): void {
    const size = String.UTF8.byteLength(text);
    this.u64(<u64>size);
    String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, this.reserve(size));
  }

  /**
   * Any value of a signature type: `bool`, `u8`..`u64`, `i8`..`i64`, `f32`,
   * `f64`, `string`, `Uint8Array` (bytes), `T | null` (option), `Array<T>`
   * (list) and `Map<K, V>` (map). `usize` and `isize` are 4 bytes here but 8 in
   * bincode: use `u64` and `i64`.
   */
  write<T>(value: T): void {
    if (isBoolean<T>()) {
      this.u8(value ? 1 : 0);
    } else if (isInteger<T>() || isFloat<T>()) {
      store<T>(this.reserve(sizeof<T>()), value);
    } else if (isNullable<T>()) {
      if (value == null) {
        this.u8(0);
      } else {
        this.u8(1);
        this.write<NonNullable<T>>(changetype<NonNullable<T>>(value));
      }
    } else if (isString<T>()) {
      this.string(changetype<string>(value));
    } else if (value instanceof Uint8Array) {
      this.bytes(changetype<Uint8Array>(value));
    } else if (isArray<T>()) {
      const items = changetype<T>(value);
      // @ts-ignore: an Array's length
      const count: i32 = items.length;
      this.u64(<u64>count);
      for (let i = 0; i < count; i++) {
        // @ts-ignore: an Array's item
        this.write<valueof<T>>(unchecked(items[i]));
      }
    } else if (value instanceof Map) {
      // @ts-ignore: a Map's keys
      const keys = value.keys();
      this.u64(<u64>keys.length);
      for (let i = 0; i < keys.length; i++) {
        const key = unchecked(keys[i]);
        this.write(key);
        // @ts-ignore: a Map's value
        this.write(value.get(key));
      }
    } else {
      ERROR("essa: Writer.write<T> takes bool, integers, f32, f64, string, Uint8Array, T | null, Array<T> and Map<K, V>");
    }
  }
}

/**
 * Reads bincode bytes. A read past the end or of a malformed value fails the
 * call (a line on stderr naming `what`, then a trap), as the Rust SDK panics;
 * `finish()` fails if bytes are left over.
 */
export class Reader {
  private pos: i32 = 0;

  /** `what` names the bytes in error messages, e.g. "count_words: its arguments". */
  constructor(public data: Uint8Array, public what: string = "bincode") {}

  /** Bytes not read yet. */
  get remaining(): i32 {
    return this.data.length - this.pos;
  }

  /** Where the next read starts. */
  get offset(): i32 {
    return this.pos;
  }

  private fail(problem: string): void {
    abort(this.what + " do not decode: " + problem + " at byte " + this.pos.toString());
  }

  // The address of the next `n` bytes, which are then consumed.
  private take(n: i32): usize {
    if (n < 0 || n > this.data.length - this.pos) {
      this.fail("they end too early (" + n.toString() + " more bytes wanted, " + this.remaining.toString() + " left)");
    }
    const at = this.data.dataStart + <usize>this.pos;
    this.pos += n;
    return at;
  }

  u8(): u8 {
    return load<u8>(this.take(1));
  }

  u32(): u32 {
    return load<u32>(this.take(4));
  }

  u64(): u64 {
    return load<u64>(this.take(8));
  }

  // A u64 length or count that must fit what is left (each item at least `unit` bytes).
  private count(unit: i32): i32 {
    const n = this.u64();
    if (n > <u64>(this.remaining / (unit > 0 ? unit : 1))) this.fail("a length of " + n.toString() + " runs past the end");
    return <i32>n;
  }

  /** A `bytes`: a u64 length, then the bytes (a copy). */
  bytes(): Uint8Array {
    const n = this.count(1);
    const out = new Uint8Array(n);
    memory.copy(out.dataStart, this.take(n), <usize>n);
    return out;
  }

  /** A `string`: a u64 length, then UTF-8 (refused if it is not). */
  string(): string {
    const n = this.count(1);
    const at = this.take(n);
    if (!validUtf8(at, n)) {
      this.pos -= n;
      this.fail("a string is not UTF-8");
    }
    return String.UTF8.decodeUnsafe(at, <usize>n);
  }

  /** Fails the call if bytes are left after the value. */
  finish(): void {
    if (this.pos != this.data.length) this.fail(this.remaining.toString() + " bytes are left over");
  }

  /** A value of a signature type (the types of `Writer.write<T>`). */
  read<T>(): T {
    if (isBoolean<T>()) {
      const byte = this.u8();
      if (byte > 1) {
        this.pos--;
        this.fail("a bool is " + byte.toString());
      }
      return <T>(byte == 1);
    } else if (isInteger<T>() || isFloat<T>()) {
      return load<T>(this.take(sizeof<T>()));
    } else if (isNullable<T>()) {
      const tag = this.u8();
      if (tag == 0) return changetype<T>(0);
      if (tag != 1) {
        this.pos--;
        this.fail("an option's tag is " + tag.toString());
      }
      return changetype<T>(this.read<NonNullable<T>>());
    } else if (isString<T>()) {
      return changetype<T>(this.string());
    } else if (idof<T>() == idof<Uint8Array>()) {
      return changetype<T>(this.bytes());
    } else if (isArray<T>()) {
      const n = this.count(0);
      const items = instantiate<T>(0);
      for (let i = 0; i < n; i++) {
        // @ts-ignore: an Array's push
        items.push(this.read<valueof<T>>());
      }
      return items;
    } else if (changetype<T>(0) instanceof Map) {
      const n = this.count(0);
      const map = instantiate<T>();
      for (let i = 0; i < n; i++) {
        // @ts-ignore: a Map's key type
        const key = this.read<indexof<T>>();
        // @ts-ignore: a Map's value type and set
        map.set(key, this.read<valueof<T>>());
      }
      return map;
    } else {
      ERROR("essa: Reader.read<T> takes bool, integers, f32, f64, string, Uint8Array, T | null, Array<T> and Map<K, V>");
      return changetype<T>(0);
    }
  }
}

/** Whether the `len` bytes at `ptr` are UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
export function validUtf8(ptr: usize, len: i32): bool {
  let i = 0;
  while (i < len) {
    const b0 = <u32>load<u8>(ptr + <usize>i);
    if (b0 < 0x80) {
      i++;
      continue;
    }
    let need = 0;
    let min: u32 = 0;
    let cp: u32 = 0;
    if ((b0 & 0xe0) == 0xc0) {
      need = 1;
      min = 0x80;
      cp = b0 & 0x1f;
    } else if ((b0 & 0xf0) == 0xe0) {
      need = 2;
      min = 0x800;
      cp = b0 & 0x0f;
    } else if ((b0 & 0xf8) == 0xf0) {
      need = 3;
      min = 0x10000;
      cp = b0 & 0x07;
    } else {
      return false;
    }
    if (i + need >= len) return false;
    for (let k = 1; k <= need; k++) {
      const b = <u32>load<u8>(ptr + <usize>(i + k));
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += need + 1;
  }
  return true;
}
