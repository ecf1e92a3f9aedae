"""The conformance suite's ``test_cancel``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_cancel import *  # noqa: F401,F403
