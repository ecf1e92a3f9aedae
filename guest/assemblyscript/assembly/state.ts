// The key-value store: lattice values under UTF-8 keys, relative to the
// call's namespace (docs/abi.md, "State keys and namespaces").

import { LatticeValue, decodeLattice } from "./lattice";
import { EssaResult, essa_get_lattice_data, essa_get_lattice_len, essa_put_lattice, resultName } from "./host";

/**
 * Merges `value` into the value stored under `key` (stores it if there is
 * none). `EssaResult.Ok` once the merge is stored; `UnknownError` if the key
 * holds another lattice type or a limit is exceeded (the host says why on stderr).
 */
export function putLattice(key: string, value: LatticeValue): EssaResult {
  return putLatticeBytes(key, value.encode());
}

/** Merges an encoded lattice value (docs/lattice-encoding.md) into `key`. */
export function putLatticeBytes(key: string, bytes: Uint8Array): EssaResult {
  const k = String.UTF8.encode(key);
  return essa_put_lattice(changetype<usize>(k), <usize>k.byteLength, bytes.dataStart, <usize>bytes.length);
}

/** The value under `key`, or null if it has none. Fails the call if the store fails. */
export function getLattice(key: string): LatticeValue | null {
  const bytes = getLatticeBytes(key);
  if (bytes == null) return null;
  return decodeLattice(bytes, "the value of " + key);
}

/** The encoded value under `key`, or null if it has none. Fails the call if the store fails. */
export function getLatticeBytes(key: string): Uint8Array | null {
  const k = String.UTF8.encode(key);
  const box = memory.data(4);
  let rc: i32;
  while (true) {
    rc = essa_get_lattice_len(changetype<usize>(k), <usize>k.byteLength, box);
    if (rc == EssaResult.NotFound) return null;
    if (rc != EssaResult.Ok) break;
    const bytes = new Uint8Array(<i32>load<u32>(box));
    rc = essa_get_lattice_data(changetype<usize>(k), <usize>k.byteLength, bytes.dataStart, <usize>bytes.length, box);
    if (rc == EssaResult.Ok) return bytes.subarray(0, <i32>load<u32>(box));
    if (rc == EssaResult.NotFound) return null;
    if (rc != EssaResult.BufferTooSmall) break; // else it grew meanwhile: ask again
  }
  abort("reading the value of " + key + " failed: " + resultName(rc));
  return null;
}
