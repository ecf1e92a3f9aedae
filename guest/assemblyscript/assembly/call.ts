// Calls: a function's own arguments and result, and remote calls of the
// module's functions with result handles (docs/abi.md, "Host functions").

import { Reader, Writer } from "./bincode";
import { EssaResult, essa_call, essa_get_args, essa_get_result, essa_get_result_len, essa_set_result, resultName } from "./host";

/** The prefix of a callable function's export (`__essa_wrapper__count_words`). */
export const WRAPPER_PREFIX = "__essa_wrapper__";

/** The call's argument bytes; `len` is the number the host called the export with. */
export function getArgs(len: i32): Uint8Array {
  const args = new Uint8Array(len);
  const rc = essa_get_args(args.dataStart, <usize>len);
  if (rc != EssaResult.Ok) abort("essa_get_args failed: " + resultName(rc));
  return args;
}

/** Makes `bytes` the call's result; a later call replaces it. Fails the call if the host refuses. */
export function setResult(bytes: Uint8Array): void {
  const rc = essa_set_result(bytes.dataStart, <usize>bytes.length);
  if (rc != EssaResult.Ok) abort("essa_set_result failed: " + resultName(rc));
}

/** A started call's raw result: `wait()` its code, then `bytes`. */
export class RawCall {
  private code: i32 = 1; // not waited for yet
  private result: Uint8Array | null = null;

  constructor(public readonly name: string, public readonly handle: u32) {}

  /** Waits until the call ends: `EssaResult.Ok`, or why it failed. Asking again gives the same answer. */
  wait(): EssaResult {
    if (this.code != 1) return this.code;
    const lenBox = memory.data(4);
    let rc: i32;
    do {
      rc = essa_get_result_len(this.handle, lenBox);
      if (rc != EssaResult.Ok) break;
      const bytes = new Uint8Array(<i32>load<u32>(lenBox));
      rc = essa_get_result(this.handle, bytes.dataStart, <usize>bytes.length, lenBox);
      if (rc == EssaResult.Ok) this.result = bytes.subarray(0, <i32>load<u32>(lenBox));
      // BufferTooSmall cannot happen for a result that is final, but ask again if it does.
    } while (rc == EssaResult.BufferTooSmall);
    this.code = rc;
    return rc;
  }

  /** The result's bytes; fails the call (a line on stderr) if the call failed. */
  bytes(): Uint8Array {
    const rc = this.wait();
    if (rc != EssaResult.Ok) abort("remote call of " + this.name + " failed: " + resultName(rc));
    return this.result!;
  }
}

/**
 * Starts a call of the module's function `name` (its name as users call it,
 * without `__essa_wrapper__`) with argument bytes, and returns at once. Fails
 * the call if it cannot start (no such function, arguments over the limit).
 */
export function callRaw(name: string, args: Uint8Array): RawCall {
  const exportName = String.UTF8.encode(WRAPPER_PREFIX + name);
  const handleBox = memory.data(4);
  const rc = essa_call(changetype<usize>(exportName), <usize>exportName.byteLength, args.dataStart, <usize>args.length, handleBox);
  if (rc != EssaResult.Ok) abort("starting a remote call of " + name + " failed: " + resultName(rc));
  return new RawCall(name, load<u32>(handleBox));
}

/**
 * A remote call whose result is a `T` (what an `@essa` function's
 * `nameRemote(...)` returns): `get()` waits and decodes it.
 */
export class Call<T> {
  constructor(public readonly raw: RawCall) {}

  /** Waits until the call ends: `EssaResult.Ok`, or why it failed. */
  wait(): EssaResult {
    return this.raw.wait();
  }

  /** Waits for the result and decodes it; fails the call if the remote call failed or its bytes are not a `T`. */
  get(): T {
    const reader = new Reader(this.raw.bytes(), "the result of " + this.raw.name);
    if (isVoid<T>()) {
      reader.finish();
      return;
    }
    const value = reader.read<T>();
    reader.finish();
    return value;
  }
}

/** Starts a remote call of `name` with the arguments in `args`; its result decodes as a `T`. */
export function call<T>(name: string, args: Writer): Call<T> {
  return new Call<T>(callRaw(name, args.finish()));
}
