"""Running Wasm: the engine interface, limits and grants, the guest ABI's host functions, the module
rewriter, WASI preview 1 helpers, where a guest trapped, a module's debug info removed."""
