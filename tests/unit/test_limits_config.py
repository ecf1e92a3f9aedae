"""Limits and grants as configuration: parsing, formatting, defaults, refusal of grants."""

from __future__ import annotations

import click
import pytest

from essa.cli.options import (
    limit_arguments,
    limits_and_grants,
    parse_dir_grant,
    parse_env_grant,
)
from essa.errors import EssaError
from essa.util.units import format_bytes, format_seconds, parse_duration, parse_size, spell_size
from essa.wasm.engine import Engine
from essa.wasm.limits import DirGrant, Grants, Limits


def test_defaults_are_sane():
    limits = Limits()
    assert limits.time_limit == 30
    assert limits.max_memory_bytes == 256 << 20
    assert limits.max_message_bytes == 64 << 20
    assert limits.max_output_bytes == 64 << 20
    assert not Grants()


@pytest.mark.parametrize(
    "text, value",
    [("65536", 65536), ("64K", 64 << 10), ("64k", 64 << 10), ("256M", 256 << 20), ("256MiB", 256 << 20),
     ("1G", 1 << 30), ("1.5G", 3 << 29), (" 16 MB ", 16 << 20), ("2T", 2 << 40), ("4096", 4096), ("512m", 512 << 20),
     ("1GiB", 1 << 30), ("2 GB", 2 << 30), ("100b", 100)],
)
def test_sizes(text, value):
    assert parse_size(text) == value
    assert parse_size(spell_size(value)) == value


@pytest.mark.parametrize("text", ["", "M", "-1", "0", "1X", "ten", "1e6"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("text, value", [("5", 5), ("0.5", 0.5), ("500ms", 0.5), ("2m", 120), ("1h", 3600), ("3s", 3)])
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "0", "-1", "soon", "5 days", "ms"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_limits_are_named_with_readable_values():
    limits = Limits(time_limit=0.5, max_memory_bytes=64 << 20, max_message_bytes=1000, max_output_bytes=3 << 29)
    assert limits.exceeded("time") == "time limit exceeded (0.5 s)"
    assert limits.exceeded("memory") == "memory limit exceeded (64 MiB)"
    assert limits.exceeded("message size") == "message size limit exceeded (1000 bytes)"
    assert limits.exceeded("output") == "output limit exceeded (1536 MiB)"
    assert format_bytes(None) == format_seconds(None) == "no limit"
    assert format_seconds(30.0) == "30 s"


@pytest.mark.parametrize("kwargs", [{"time_limit": 0}, {"time_limit": -1}, {"max_memory_bytes": 0},
                                    {"max_message_bytes": 0}, {"max_output_bytes": -1}])
def test_invalid_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        Limits(**kwargs)


def test_options_become_limits_and_grants(tmp_path):
    limits, grants = limits_and_grants("0.5", "64M", "16M", "none", (f"{tmp_path}:/data:ro",), ("A=1", "B="))
    assert limits == Limits(time_limit=0.5, max_memory_bytes=64 << 20, max_message_bytes=16 << 20, max_output_bytes=None)
    assert grants == Grants((DirGrant(str(tmp_path), "/data", False),), (("A", "1"), ("B", "")))
    assert limits_and_grants(None, None, None, None, (), ()) == (Limits(), Grants())
    assert limits_and_grants("none", None, None, None, (), ())[0].time_limit is None


def test_limit_arguments_round_trip(tmp_path):
    limits = Limits(time_limit=0.25, max_memory_bytes=12345678, max_message_bytes=1 << 20, max_output_bytes=None)
    grants = Grants((DirGrant(str(tmp_path), "/d", True),), (("K", "v=w"),))
    args = limit_arguments(limits, grants)

    @click.command()
    @click.option("--time-limit")
    @click.option("--memory-limit")
    @click.option("--max-message-size")
    @click.option("--output-limit")
    @click.option("--dir", "dirs", multiple=True)
    @click.option("--env", multiple=True)
    def parse(**flags):
        return limits_and_grants(**flags)

    assert parse.main(args, standalone_mode=False) == (limits, grants)


@pytest.mark.parametrize(
    "spec, guest, writable",
    [("{d}", "{d}", True), ("{d}:/data", "/data", True), ("{d}:/data:ro", "/data", False),
     ("{d}::ro", "{d}", False), ("{d}:rw", "{d}", True)],
)
def test_dir_grants(tmp_path, spec, guest, writable):
    grant = parse_dir_grant(spec.format(d=tmp_path))
    assert grant == DirGrant(str(tmp_path), guest.format(d=tmp_path), writable)


@pytest.mark.parametrize("spec", ["", ":/x", "/no/such/dir", "{d}:a:b:c"])
def test_bad_dir_grants(tmp_path, spec):
    with pytest.raises(click.BadParameter):
        parse_dir_grant(spec.format(d=tmp_path))


def test_env_grants(monkeypatch):
    monkeypatch.setenv("ESSA_TEST_VALUE", "from here")
    assert parse_env_grant("K=a=b") == ("K", "a=b")
    assert parse_env_grant("ESSA_TEST_VALUE") == ("ESSA_TEST_VALUE", "from here")
    monkeypatch.delenv("ESSA_TEST_VALUE")
    for bad in ("=x", "ESSA_TEST_VALUE"):
        with pytest.raises(click.BadParameter):
            parse_env_grant(bad)


class _Plain(Engine):
    name = "plain"
    version = "0"

    def compile(self, wasm):  # pragma: no cover - never called
        raise NotImplementedError

    serialize = deserialize = prepare = compile


def test_an_engine_refuses_grants_it_does_not_declare(tmp_path):
    _Plain()  # no grants: fine
    with pytest.raises(EssaError, match="engine 'plain' cannot grant directories to guests"):
        _Plain(grants=Grants(dirs=(DirGrant(str(tmp_path), "/x"),)))
    with pytest.raises(EssaError, match="cannot grant environment variables"):
        _Plain(grants=Grants(env=(("A", "1"),)))
