"""Contexts: saved in essa's data directory (owner-only files), chosen by name, ESSA_CONTEXT or the current one;
and a refused endpoint fails at once, naming the context it came from."""

from __future__ import annotations

import socket
import stat

import pytest

import essa
from essa.api import contexts
from essa.errors import EssaError, NotFound
from essa.testing.ports import free_port
from essa.transport.probe import refused, tcp_address


def test_a_saved_context_is_owner_only_and_reads_back(essa_home):
    context = contexts.Context("prod", ("tls/10.0.0.5:7447",), ("/ca.pem", "/c.pem", "/c.key"), "essa1.x.y", "mine")
    path = contexts.save(context)
    assert contexts.get("prod") == context
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds a token
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [c.name for c in contexts.list_contexts()] == ["prod"]
    assert contexts.current_name() == contexts.EMBEDDED


def test_current_environment_and_explicit_choices(essa_home, monkeypatch):
    contexts.save(contexts.Context("a", ("tcp/127.0.0.1:1",)), make_current=True)
    contexts.save(contexts.Context("b", ("tcp/127.0.0.1:2",)))
    assert contexts.chosen().name == "a"
    monkeypatch.setenv("ESSA_CONTEXT", "b")
    assert contexts.chosen().name == "b"
    assert contexts.chosen("a").name == "a"
    assert contexts.chosen("embedded") is None
    monkeypatch.setenv("ESSA_CONTEXT", "embedded")
    assert contexts.chosen() is None


def test_removing_the_current_context_makes_embedded_current(essa_home):
    contexts.save(contexts.Context("a", ("tcp/127.0.0.1:1",)), make_current=True)
    assert contexts.remove("a") and not contexts.remove("a")
    assert contexts.current_name() == contexts.EMBEDDED


def test_up_gives_the_current_context_back_when_its_cluster_stops(essa_home):
    contexts.save(contexts.Context("mine", ("tcp/127.0.0.1:1",)), make_current=True)
    contexts.save(contexts.Context("local", ("tcp/127.0.0.1:2",)), make_current=True)
    contexts.restore_current("local", "mine")
    assert contexts.current_name() == "mine"
    contexts.restore_current("local", "embedded")  # someone chose another meanwhile: left alone
    assert contexts.current_name() == "mine"


@pytest.mark.parametrize("call, message", [
    (lambda: contexts.get("nope"), "no context named 'nope' (contexts: none; `essa context add` makes one)"),
    (lambda: contexts.use("nope"), "no context named 'nope'"),
    (lambda: contexts.get("a/b"), "'a/b' is not a valid context name"),
    (lambda: contexts.save(contexts.Context("embedded", ("tcp/x:1",))), "'embedded' is the built-in context"),
    (lambda: contexts.remove("embedded"), "'embedded' is the built-in context: it cannot be removed"),
])
def test_bad_choices_are_one_line(essa_home, call, message):
    with pytest.raises(EssaError) as raised:
        call()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_damaged_context_file_is_named(essa_home):
    contexts.directory().mkdir(parents=True)
    (contexts.directory() / "bad.json").write_text('{"name": "bad", "endpoints": "tcp/x:1"}')
    with pytest.raises(EssaError, match=r"bad.json is not a context \('endpoints' is not a list"):
        contexts.get("bad")
    assert contexts.list_contexts() == []  # left out of listings


def test_tcp_addresses_of_endpoints():
    assert tcp_address("tcp/127.0.0.1:7447") == ("127.0.0.1", 7447)
    assert tcp_address("tls/[::1]:7447#iface=lo") == ("::1", 7447)
    assert tcp_address("udp/127.0.0.1:7447") is None
    assert tcp_address("tcp/127.0.0.1") is None


def test_a_port_where_nothing_listens_refuses_and_a_listener_does_not():
    port = free_port()
    assert refused(f"tcp/127.0.0.1:{port}")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        assert not refused(f"tcp/127.0.0.1:{listener.getsockname()[1]}")  # it answers, even if never a zenoh peer
    assert not refused("unixsock-stream//tmp/nothing")  # not TCP: not known


def test_connect_to_a_refused_endpoint_fails_in_one_line(essa_home):
    with pytest.raises(EssaError) as raised:
        essa.connect(f"tcp/127.0.0.1:{free_port()}", timeout=60)
    assert "nothing listens there (connection refused" in str(raised.value)


def test_connect_uses_the_current_context_and_says_so_when_it_does_not_answer(essa_home):
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    contexts.save(contexts.Context("local", (endpoint,), note="written by essa up"), make_current=True)
    with pytest.raises(EssaError) as raised:
        essa.connect(timeout=60)
    message = str(raised.value)
    assert message.startswith(f"cannot reach {endpoint}: nothing listens there")
    assert "context 'local', written by essa up: is that cluster up? `essa context use embedded`" in message
    with pytest.raises(NotFound, match="no context named 'other'"):
        essa.connect(context="other")


def test_an_embedded_runtime_is_asked_for_whatever_the_current_context(essa_home, engine_name):
    contexts.save(contexts.Context("local", (f"tcp/127.0.0.1:{free_port()}",)), make_current=True)
    with essa.connect(engine=engine_name, store="memory") as es:  # arguments of an embedded runtime
        assert es.where.startswith("embedded")
    with essa.connect(context="embedded") as es:
        assert es.where.startswith("embedded")
