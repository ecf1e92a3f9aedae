"""The conformance suite's ``test_abi``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_abi import *  # noqa: F401,F403
