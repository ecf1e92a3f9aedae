"""The conformance suite's ``test_engine``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_engine import *  # noqa: F401,F403
