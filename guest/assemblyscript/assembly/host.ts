// The eight host functions of docs/abi.md (module `host`). Every parameter and
// result is an i32; pointers and lengths are addresses and sizes in this
// module's memory, and lengths and handles the host writes are u32 LE.

// @ts-ignore: decorator
@external("host", "essa_get_args")
export declare function essa_get_args(buf_ptr: usize, buf_len: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_set_result")
export declare function essa_set_result(ptr: usize, len: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_call")
export declare function essa_call(name_ptr: usize, name_len: usize, args_ptr: usize, args_len: usize, handle_ptr: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_get_result_len")
export declare function essa_get_result_len(handle: u32, len_ptr: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_get_result")
export declare function essa_get_result(handle: u32, val_ptr: usize, capacity: usize, len_ptr: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_put_lattice")
export declare function essa_put_lattice(key_ptr: usize, key_len: usize, val_ptr: usize, val_len: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_get_lattice_len")
export declare function essa_get_lattice_len(key_ptr: usize, key_len: usize, len_ptr: usize): i32;

// @ts-ignore: decorator
@external("host", "essa_get_lattice_data")
export declare function essa_get_lattice_data(key_ptr: usize, key_len: usize, val_ptr: usize, capacity: usize, len_ptr: usize): i32;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
export declare function clock_time_get(clock_id: u32, precision: u64, time_ptr: usize): u16;

/** The host's result codes (docs/abi.md, "Result codes"). */
export enum EssaResult {
  Ok = 0,
  UnknownError = -1,
  NoSuchFunction = -2,
  BufferTooSmall = -3,
  NotFound = -4,
  InvalidFunctionSignature = -5,
  NoResult = -6,
  InvalidResult = -8,
}

/** A code's name, as the C and Rust SDKs spell it ("NotFound"); "code N" for an unknown one. */
export function resultName(code: i32): string {
  switch (code) {
    case EssaResult.Ok: return "Ok";
    case EssaResult.UnknownError: return "UnknownError";
    case EssaResult.NoSuchFunction: return "NoSuchFunction";
    case EssaResult.BufferTooSmall: return "BufferTooSmall";
    case EssaResult.NotFound: return "NotFound";
    case EssaResult.InvalidFunctionSignature: return "InvalidFunctionSignature";
    case EssaResult.NoResult: return "NoResult";
    case EssaResult.InvalidResult: return "InvalidResult";
    default: return "code " + code.toString();
  }
}

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(status: u32): void;

/** Ends the module's run with `status` (`essa run` exits with it; a called function's caller gets UnknownError unless 0). */
export function exit(status: i32): void {
  proc_exit(<u32>status);
}
