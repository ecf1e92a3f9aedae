"""Testing aids for essa and its plugins.

:mod:`essa.testing.conformance` is the engine conformance suite: a pytest
plugin plus tests that every engine plugin must pass unchanged;
:mod:`essa.testing.printing` a module whose functions print (and one traps).
"""

#: What ``examples/test-function.wasm`` (and its Rust twin) prints, line for line.
TEST_FUNCTION_OUTPUT = """\
Hello world from test function!
Waiting for result...
Function result: "FOOBAR"
Storing a set in the kvs
Waiting for result...
Function result: FOOBAR fooo
Reading the set from the kvs
Result: {"one", "three", "two"}
Appending to the set in the kvs
Waiting for result...
Function result: 165000
Reading the set from the kvs
Result: {"four", "one", "three", "two"}
Running concurrent KVS test
Reading the concurrent KVS test result set from the kvs
DONE
"""
