"""The conformance suite's ``test_sandbox``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_sandbox import *  # noqa: F401,F403
