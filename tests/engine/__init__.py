"""Engine tests: essa's engine conformance suite (essa.testing.conformance) for the
engine chosen with --essa-engine or $ESSA_TEST_ENGINE (default wasmtime), plus
tests of individual engine plugins."""
