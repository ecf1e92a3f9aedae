// @essa/as: write essa functions in AssemblyScript (guest/assemblyscript/README.md).
//
// Mark a function `@essa` and the transform (transform/index.js) exports it
// the way essa calls it, adds `nameRemote(...)` to call it remotely, and
// records its signature in the module's `essa.signatures` section.

export { Reader, Writer, validUtf8 } from "./bincode";
export { EssaResult, resultName, exit } from "./host";
export { Call, RawCall, call, callRaw, getArgs, setResult, WRAPPER_PREFIX } from "./call";
export {
  LatticeValue,
  LwwLattice,
  SetLattice,
  OrderedSetLattice,
  SingleCausalLattice,
  MultiCausalLattice,
  VectorClock,
  decodeLattice,
  compareBytes,
  sortedDistinct,
  formatTimestamp,
  nowNanos,
} from "./lattice";
export { putLattice, putLatticeBytes, getLattice, getLatticeBytes } from "./state";
