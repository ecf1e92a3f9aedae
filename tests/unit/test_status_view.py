"""`essa status` with several schedulers: each counts the calls it placed, so the executors' in-flight counts add up."""

from __future__ import annotations

from essa.cli.status import _in_flight


def test_the_calls_in_flight_at_an_executor_are_those_of_every_scheduler():
    seen_by_a = {"0": {"in_flight": 3, "others": 1}, "1": {"in_flight": 0, "others": 2}}
    seen_by_b = {"0": {"in_flight": 1, "others": 3}, "1": {"in_flight": 2, "others": 0}, "2": {"in_flight": 0}}
    schedulers = [{"role": "scheduler", "executors": seen_by_a}, {"role": "scheduler", "executors": seen_by_b}]
    assert _in_flight(schedulers) == {"0": 4, "1": 2, "2": 0}
