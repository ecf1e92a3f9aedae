"""essa.cluster.logbook and logreader: lines kept per deployment within bounds, queried, merged, followed."""

from __future__ import annotations

import pytest

from essa.cluster.control import ControlError
from essa.cluster.lines import MAX_LINE, OutputLines
from essa.cluster.logbook import LINE_OVERHEAD, LogBook, LogBounds, with_stderr
from essa.cluster.logreader import LogFollower, LogQuery, read_logs
from essa.transport.local import LocalTransport


class Sink:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def write(self, stream: int, data: bytes) -> None:
        self.chunks.append((stream, data))


def request(call: str = "caller-1/1", deployment: str | None = "wc", version: int | None = 3,
            function: str = "__essa_wrapper__count", namespace: str | None = None) -> dict:
    req = {"id": call, "function": function, "namespace": namespace or deployment or "ns"}
    if deployment is not None:
        req["deployment"] = deployment
    if version is not None:
        req["version"] = version
    return req


def texts(book: LogBook, **query) -> list[str]:
    answer = book.answer({"deployment": "wc", **query})
    assert answer["ok"], answer
    return [line[7] for line in answer["lines"]]


def test_output_goes_on_and_its_lines_are_kept_with_who_wrote_them():
    book, sink = LogBook("0"), Sink()
    log = book.call_log(request(), "0", sink)
    for chunk in (b"one\ntw", b"o\r\n", b"", b"thr"):
        log.write(1, chunk)
    log.write(2, b"oops\n")
    log.close()
    assert sink.chunks == [(1, b"one\ntw"), (1, b"o\r\n"), (1, b""), (1, b"thr"), (2, b"oops\n")]
    answer = book.answer({"deployment": "wc"})
    assert [line[5:] for line in answer["lines"]] == [
        ["stdout", "0", "one"], ["stdout", "0", "two"], ["stderr", "0", "oops"], ["stdout", "0", "thr"]]
    seq, when, version, function, call = answer["lines"][0][:5]
    assert (version, function, call) == (3, "count", "caller-1/1") and when > 0 and seq > 0
    assert answer["book"] == book.id and book.id.startswith("0-")


def test_a_long_line_is_kept_in_pieces():
    book = LogBook("0")
    log = book.call_log(request(), "0", Sink())
    log.write(1, b"x" * (2 * MAX_LINE + 5))  # never ends: kept in pieces as it goes, the rest at close
    log.write(1, b"y" * 10 + b"\n" + b"z" * (MAX_LINE + 1) + b"\n")
    log.close()
    assert [len(t) for t in texts(book)] == [MAX_LINE, MAX_LINE, 15, MAX_LINE, 1]


def test_only_a_deployments_calls_are_kept():
    book = LogBook("0")
    for req in (request(deployment=None), request(namespace="other"), request(deployment="wc", namespace="evil")):
        log = book.call_log(req, "0", Sink())
        log.write(1, b"not kept\n")
        log.write(2, b"still in the tail\n")
        log.close()
        assert log.stderr_tail() == ["still in the tail"]
    assert book.stats()["lines"] == 0


def test_a_call_keeps_its_newest_lines_and_cannot_push_out_the_others():
    line = b"l" * 36 + b"\n"  # costs 100 bytes
    cost = 36 + LINE_OVERHEAD
    book = LogBook("0", LogBounds(deployment=50 * cost, call=10 * cost, total=1000 * cost))
    quiet = book.call_log(request("quiet/1"), "0", Sink())
    quiet.write(1, b"from the quiet call\n")
    chatty = book.call_log(request("chatty/1"), "0", Sink())
    for i in range(1000):
        chatty.write(1, b"%04d" % i + line[4:])
    kept = texts(book)
    assert kept[0] == "from the quiet call"
    assert [t[:4] for t in kept[1:]] == ["%04d" % i for i in range(990, 1000)]


def test_a_deployment_keeps_its_newest_lines_and_the_book_its_most_recently_written_deployments():
    cost = 10 + LINE_OVERHEAD
    book = LogBook("0", LogBounds(deployment=5 * cost, call=100 * cost, total=12 * cost))
    for name in ("a", "b", "c"):
        log = book.call_log(request(deployment=name), "0", Sink())
        for i in range(8):
            log.write(1, b"%s-line-%03d\n" % (name.encode(), i))
        log.close()
    def kept(name: str) -> list[str]:
        return [line[7] for line in book.answer({"deployment": name})["lines"]]
    assert kept("c") == [f"c-line-{i:03d}" for i in range(3, 8)]
    assert kept("b") == [f"b-line-{i:03d}" for i in range(3, 8)]
    assert kept("a") == [f"a-line-{i:03d}" for i in range(6, 8)]  # 12 lines in all: a's oldest went first
    assert book.stats() == {"deployments": 3, "lines": 12, "bytes": 12 * cost}


def test_memory_stays_within_the_bounds_over_many_calls():
    bounds = LogBounds(deployment=20_000, call=2_000, total=50_000)
    book = LogBook("0", bounds)
    for i in range(20_000):
        log = book.call_log(request(f"c/{i}", deployment=f"d{i % 7}"), "0", Sink())
        log.write(1, b"line %d\n" % i)
        log.write(2, b"e" * (i % 300) + b"\n")
        log.close()
    stats = book.stats()
    assert stats["bytes"] <= bounds.total and stats["deployments"] <= 7


def test_nothing_is_kept_with_a_zero_bound_but_errors_still_get_the_stderr_tail():
    book = LogBook("0", LogBounds(deployment=0))
    log = book.call_log(request(), "0", Sink())
    log.write(2, b"a\nb\nc\nd\ne\nf\ng\nunfinished")
    assert log.stderr_tail() == ["c", "d", "e", "f", "g", "unfinished"][-5:]
    log.close()
    assert book.stats()["lines"] == 0


def test_a_failed_calls_message_ends_with_its_stderr():
    reply = {"id": "c/1", "code": -1, "message": "f trapped: unreachable (in abort <- f)", "kind": "trap"}
    assert with_stderr(reply, []) is reply
    out = with_stderr(reply, ["first", "  ", "second", "third", "fourth"])
    assert out["message"] == "f trapped: unreachable (in abort <- f); stderr: second | third | fourth"
    assert out["stderr"] == ["first", "  ", "second", "third", "fourth"]
    long = with_stderr(reply, ["x" * 1000])
    assert len(long["message"]) < 400 and long["message"].endswith("x" * 100)


def test_queries_filter_by_version_time_call_cursor_and_keep_the_newest():
    book = LogBook("0")
    for i in range(6):
        log = book.call_log(request(f"c/{i}", version=1 + i % 2), "0", Sink())
        log.write(1, b"line %d\n" % i)
    lines = book.answer({"deployment": "wc"})["lines"]
    assert texts(book, version=2) == ["line 1", "line 3", "line 5"]
    assert texts(book, call="c/4") == ["line 4"]
    assert texts(book, limit=2) == ["line 4", "line 5"]
    assert texts(book, after={book.id: lines[3][0], "other-book": 10**9}) == ["line 4", "line 5"]
    assert texts(book, since=lines[-1][1] + 1) == []
    assert book.answer({"deployment": "other"}) == {"ok": True, "book": book.id, "lines": [], "newest": 0, "lost": 0}


@pytest.mark.parametrize("query, problem", [
    ({"deployment": "bad name"}, "not a valid deployment name"),
    ({"deployment": "wc", "version": "3"}, "'version'"),
    ({"deployment": "wc", "since": "yesterday"}, "'since'"),
    ({"deployment": "wc", "call": 7}, "'call'"),
    ({"deployment": "wc", "after": [1]}, "'after'"),
    ({"deployment": "wc", "limit": 0}, "'limit'"),
    ([], "not a log query"),
])
def test_a_malformed_query_is_answered_with_one_line(query, problem):
    answer = LogBook("0").answer(query)
    assert answer["ok"] is False and answer["kind"] == "invalid" and problem in answer["error"]


def test_two_books_are_read_merged_by_time_and_followed_without_repeats():
    transport = LocalTransport()
    books = [LogBook("0"), LogBook("1")]
    subscriptions = [book.serve(transport) for book in books]
    try:
        logs = [book.call_log(request(f"c/{i}"), str(i), Sink()) for i, book in enumerate(books)]
        for i in range(4):
            logs[i % 2].write(1, b"early %d\n" % i)
        query = LogQuery(transport, "wc")
        assert [line.text for line in read_logs(query)] == [f"early {i}" for i in range(4)]
        assert [line.text for line in read_logs(query, tail=1)] == ["early 3"]
        assert read_logs(query, tail=0) == []
        assert {line.executor for line in read_logs(query)} == {"0", "1"}
        follower = LogFollower(query, tail=2, interval=0.01)
        assert [line.text for line in follower.poll()] == ["early 2", "early 3"]
        assert follower.poll() == []
        logs[1].write(1, b"late\n")
        logs[0].write(2, b"later\n")
        assert [(line.text, line.stream) for line in follower.poll()] == [("late", "stdout"), ("later", "stderr")]
        assert follower.poll() == [] and follower.lost == 0
        from_now = LogFollower(query, tail=0)
        assert from_now.poll() == []
        logs[0].write(1, b"new\n")
        assert [line.text for line in from_now.poll()] == ["new"]
        line = read_logs(query)[-1]
        assert line.as_dict()["time"].endswith("Z") and str(line).endswith(" wc@3 count call c/0 on executor 0 stdout: new")
    finally:
        for subscription in subscriptions:
            subscription.close()


def test_a_follower_counts_lines_dropped_before_it_read_them():
    transport = LocalTransport()
    cost = 6 + LINE_OVERHEAD
    book = LogBook("0", LogBounds(deployment=3 * cost))
    subscription = book.serve(transport)
    try:
        follower = LogFollower(LogQuery(transport, "wc"), interval=0.01)
        log = book.call_log(request(), "0", Sink())
        log.write(1, b"line 0\n")
        assert [line.text for line in follower.poll()] == ["line 0"]
        for i in range(1, 8):
            log.write(1, b"line %d\n" % i)
        assert [line.text for line in follower.poll()] == ["line 5", "line 6", "line 7"]
        assert follower.lost == 1
    finally:
        subscription.close()


def test_a_refusal_is_raised_when_no_book_answered_otherwise():
    transport = LocalTransport()
    subscription = transport.serve("essa/logs/x", lambda request: {"ok": False, "error": "no", "kind": "refused"})
    try:
        with pytest.raises(ControlError, match="no") as info:
            read_logs(LogQuery(transport, "wc"))
        assert info.value.kind == "refused"
    finally:
        subscription.close()


def test_output_lines_hands_on_whole_lines_of_each_stream():
    got = []
    lines = OutputLines(lambda stream, text: got.append((stream, text)))
    for stream, data in ((1, b"a"), (2, b"err"), (1, b"b\nc\r\n"), (1, b"d"), (3, b"ignored\n"), (1, "not bytes")):
        lines({"stream": stream, "data": data})
    lines.flush()
    assert got == [("stdout", "ab"), ("stdout", "c"), ("stdout", "d"), ("stderr", "err")]
