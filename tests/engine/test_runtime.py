"""The conformance suite's ``test_runtime``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_runtime import *  # noqa: F401,F403
