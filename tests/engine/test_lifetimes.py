"""The conformance suite's ``test_lifetimes``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_lifetimes import *  # noqa: F401,F403
