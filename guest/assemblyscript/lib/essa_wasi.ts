// The globals essa's asconfig.json puts in place of AssemblyScript's defaults
// (`use`: abort, trace, seed, console), written on WASI preview 1 so that a
// module imports nothing but `host` and `wasi_snapshot_preview1` (docs/abi.md):
// AssemblyScript's own versions import from `env`, which essa refuses to link.
//
// Every export of a file in a `lib` directory is a global of the program, so
// each name here starts with `essa_`.

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function essa_fd_write(fd: u32, iovs: usize, iovs_len: usize, nwritten: usize): u16;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function essa_random_get(buf: usize, buf_len: usize): u16;

/** Writes the UTF-8 of `text` to the file descriptor `fd` (1: stdout, 2: stderr). */
export function essa_write(fd: u32, text: string): void {
  const bytes = String.UTF8.encode(text);
  const iov = memory.data(16);
  let ptr = changetype<usize>(bytes);
  let left = <usize>bytes.byteLength;
  while (left > 0) {
    store<usize>(iov, ptr);
    store<usize>(iov, left, sizeof<usize>());
    if (essa_fd_write(fd, iov, 1, iov + 2 * sizeof<usize>()) != 0) return;
    const written = load<usize>(iov + 2 * sizeof<usize>());
    if (written == 0) return;
    ptr += written;
    left -= written;
  }
}

/**
 * `abort()` and failed assertions: one line on stderr, then a trap, so the
 * call fails and its caller gets UnknownError (as a C guest's abort() does).
 * The message is written without allocating: abort may run when memory is out.
 */
export function essa_abort(
  message: string | null = null,
  fileName: string | null = null,
  lineNumber: u32 = 0,
  columnNumber: u32 = 0,
): void {
  const buf = memory.data(1024);
  let pos: usize = 0;
  pos = essa_put_string(buf, pos, message != null ? message : "abort");
  if (fileName != null) {
    pos = essa_put_string(buf, pos, " (");
    pos = essa_put_string(buf, pos, fileName);
    pos = essa_put_string(buf, pos, ":");
    pos = essa_put_number(buf, pos, lineNumber);
    pos = essa_put_string(buf, pos, ":");
    pos = essa_put_number(buf, pos, columnNumber);
    pos = essa_put_string(buf, pos, ")");
  }
  store<u8>(buf + pos, 10);
  pos++;
  const iov = memory.data(16);
  store<usize>(iov, buf);
  store<usize>(iov, pos, sizeof<usize>());
  essa_fd_write(2, iov, 1, iov + 2 * sizeof<usize>());
  unreachable();
}

// The UTF-8 of `text` into the abort buffer, if it fits (ASCII with '?' for the rest if not).
function essa_put_string(buf: usize, pos: usize, text: string): usize {
  if (<usize>String.UTF8.byteLength(text) <= 1000 - pos) {
    return pos + String.UTF8.encodeUnsafe(changetype<usize>(text), text.length, buf + pos);
  }
  for (let i = 0; i < text.length && pos < 1000; i++) {
    const c = text.charCodeAt(i);
    store<u8>(buf + pos++, c < 0x80 ? <u8>c : 0x3f);
  }
  return pos;
}

function essa_put_number(buf: usize, pos: usize, n: u32): usize {
  const digits = memory.data(10);
  let count = 0;
  do {
    store<u8>(digits + count++, <u8>(0x30 + n % 10));
    n /= 10;
  } while (n);
  while (count > 0) store<u8>(buf + pos++, load<u8>(digits + --count));
  return pos;
}

/** `trace()`: the message and its numbers on stderr. */
export function essa_trace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let line = "trace: " + message;
  if (n > 0) line += " " + a0.toString();
  if (n > 1) line += " " + a1.toString();
  if (n > 2) line += " " + a2.toString();
  if (n > 3) line += " " + a3.toString();
  if (n > 4) line += " " + a4.toString();
  essa_write(2, line + "\n");
}

/** The seed of `Math.random()`: WASI's random bytes. */
export function essa_seed(): f64 {
  const buf = memory.data(8);
  let bits: u64 = 0;
  while (bits == 0) {
    essa_random_get(buf, 8);
    bits = load<u64>(buf);
  }
  return reinterpret<f64>(bits);
}

/**
 * `console`: `log`, `info` and `debug` write a line to stdout, `warn` and
 * `error` to stderr. Wherever the call runs, essa sends both to the console of
 * the `essa run` that started it.
 */
export namespace essa_console {
  export function log(message: string = ""): void {
    essa_write(1, message + "\n");
  }

  export function info(message: string = ""): void {
    essa_write(1, message + "\n");
  }

  export function debug(message: string = ""): void {
    essa_write(1, message + "\n");
  }

  export function warn(message: string = ""): void {
    essa_write(2, message + "\n");
  }

  export function error(message: string = ""): void {
    essa_write(2, message + "\n");
  }

  export function assert<T>(condition: T, message: string = ""): void {
    if (!condition) essa_write(2, "Assertion failed: " + message + "\n");
  }
}
