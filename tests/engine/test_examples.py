"""The conformance suite's ``test_examples``, for the engine of --essa-engine / $ESSA_TEST_ENGINE."""

from essa.testing.conformance.test_examples import *  # noqa: F401,F403
