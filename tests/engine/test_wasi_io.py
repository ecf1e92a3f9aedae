"""The conformance suite's ``test_wasi_io``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_wasi_io import *  # noqa: F401,F403
