"""The conformance suite's ``test_limits``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_limits import *  # noqa: F401,F403
