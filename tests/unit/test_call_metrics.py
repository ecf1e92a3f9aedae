"""The executor's call metrics: a batch (metrics.calls_ended, a DAG's stages) counts what one call at a time would."""

from __future__ import annotations

from essa.cluster import metrics


def sample(collector, name: str, labels: dict[str, str]) -> float:
    """The value of sample ``name`` with ``labels`` in ``collector`` (0 if it has none yet)."""
    for family in collector.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def counted(deployment: str) -> tuple[float, ...]:
    calls = {"deployment": deployment, "function": "f", "outcome": "ok"}
    return (sample(metrics.CALLS, "essa_calls_total", calls),
            sample(metrics.CALL_DURATION, "essa_call_duration_seconds_count", {"deployment": deployment}),
            sample(metrics.CALL_DURATION, "essa_call_duration_seconds_sum", {"deployment": deployment}),
            sample(metrics.CALL_BYTES, "essa_call_bytes_total", {"direction": "in"}),
            sample(metrics.CALL_BYTES, "essa_call_bytes_total", {"direction": "out"}))


def test_a_batch_counts_what_its_calls_one_by_one_do(monkeypatch):
    monkeypatch.setattr(metrics, "ENABLED", True)
    calls = [("batch-a", "f", "ok", 0.001, 0.25, 3, 5), ("batch-a", "f", "ok", 0.002, 0.5, 4, 6)]
    before = counted("batch-a")
    metrics.calls_ended(calls)
    batched = [after - b for after, b in zip(counted("batch-a"), before)]
    before = counted("single-a")
    for call in calls:
        metrics.call_ended("single-a", *call[1:])
    single = [after - b for after, b in zip(counted("single-a"), before)]
    assert batched == single == [2, 2, 0.75, 7, 11]
    metrics.calls_ended([])  # an empty batch counts nothing (and does not fail)
