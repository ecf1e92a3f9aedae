"""essa.toml: what a project file says, what it refuses (in one line), its sources, and a real build."""

from __future__ import annotations

import os
import time

import pytest

from essa.api.project import find_project, load_project, open_project
from essa.errors import EssaError

#: The smallest Wasm module: the header alone.
EMPTY_MODULE = b"\0asm\1\0\0\0"


def write(directory, text: str):
    path = directory / "essa.toml"
    path.write_text(text)
    return path


def test_every_key(tmp_path):
    (tmp_path / "data").mkdir()
    project = load_project(write(tmp_path, """
[project]
name = "hello"
language = "c"
[build]
command = "make"
output = "out/hello.wasm"
watch = ["src/*.c"]
[limits]
time = "5s"
memory = "64M"
max-message-size = 1048576
output = "none"
[grants]
dirs = ["data:/data:ro", "data"]
env = ["LANG=C.UTF-8"]
[dev]
http = "127.0.0.1:9000"
[functions.greet]
params = ["string"]
"""))
    assert (project.name, project.language, project.command, project.output, project.watch) == (
        "hello", "c", "make", "out/hello.wasm", ("src/*.c",))
    assert project.output_path == tmp_path.resolve() / "out" / "hello.wasm"
    flags = project.limit_flags()
    assert (flags["time_limit"], flags["memory_limit"], flags["max_message_size"], flags["output_limit"]) == (
        "5s", "64M", "1048576", "none")
    data = str((tmp_path / "data").resolve())
    assert flags["dirs"] == (f"{data}:/data:ro", f"{data}:data") and flags["env"] == ("LANG=C.UTF-8",)
    assert project.http == "127.0.0.1:9000"
    assert project.functions == {"greet": {"params": ["string"]}}


def test_defaults_follow_the_language(tmp_path):
    project = load_project(write(tmp_path, '[project]\nname = "r"\nlanguage = "rust"\n'))
    assert (project.command, project.output, project.watch) == ("sh build.sh", "r.wasm",
                                                                ("src/**/*.rs", "Cargo.toml"))
    other = load_project(write(tmp_path, '[project]\nname = "o"\n'))
    assert (other.language, other.command, other.watch) == ("other", None, ("**/*",))


@pytest.mark.parametrize("text, message", [
    ('[project]\nname = "a"\n[biuld]\n', "unknown table [biuld] (tables: project, build, limits, grants, dev, "
                                         "functions)"),
    ('[project]\nname = "a"\n[build]\ncomand = "x"\n', "[build] has no key 'comand' (keys: command, output, watch)"),
    ('[project]\nname = "a"\n[build]\noutput = 3\n', "[build] output cannot be 3"),
    ('[project]\nname = "a"\n[limits]\ntime = true\n', "[limits] time cannot be True"),
    ('[project]\nlanguage = "c"\n', "[project] needs a name"),
    ('[project]\nname = "a b"\n', "[project] name: 'a b' is not a valid deployment name"),
    ('[project]\nname = "a"\nlanguage = "go"\n', "language 'go' is none of c, rust, ts, other"),
    ('[project]\nname = "a"\n[build]\noutput = "../a.wasm"\n', "must lie in the project's directory"),
    ('[project]\nname = "a"\n[build]\nwatch = ["/etc/*"]\n', "[build] watch is a list of globs relative"),
    ('[project]\nname = "a"\n[grants]\nenv = [1]\n', "[grants] env is a list of text"),
    ('[project]\nname = "a"\nfunctions = 3\n', "[project] has no key 'functions'"),
    ('[project]\nname = "a"\n[functions]\ngreet = 3\n', "[functions] holds one table per function"),
    ('[project\n', "is not valid TOML"),
    ('project = 1\n', "project must be a table"),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(EssaError) as raised:
        load_project(write(tmp_path, text))
    assert message in str(raised.value) and str(raised.value).startswith(str(tmp_path)), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_project_is_found_from_a_subdirectory(tmp_path):
    write(tmp_path, '[project]\nname = "a"\n')
    deep = tmp_path / "src" / "deep"
    deep.mkdir(parents=True)
    assert find_project(deep) == (tmp_path / "essa.toml").resolve()
    assert open_project(deep).name == "a"
    with pytest.raises(EssaError, match="no essa.toml here or in a parent directory"):
        open_project(tmp_path.parent.parent / "nowhere-near")


def test_sources_leave_out_the_output_build_trees_and_hidden_directories(tmp_path):
    project = load_project(write(tmp_path, '[project]\nname = "a"\n'))  # watches **/*
    for name in ("a.c", "src/b.c", "a.wasm", "target/x.c", ".git/HEAD", "node_modules/m.js"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert sorted(project.sources()) == ["a.c", "essa.toml", "src/b.c"]


def test_needs_build_when_the_output_is_missing_or_older(tmp_path):
    project = load_project(write(tmp_path, '[project]\nname = "a"\nlanguage = "c"\n'))
    source = tmp_path / "a.c"
    source.write_text("int x;")
    assert project.needs_build()
    (tmp_path / "a.wasm").write_bytes(EMPTY_MODULE)
    old = time.time() - 100
    os.utime(source, (old, old))
    os.utime(project.path, (old, old))
    assert not project.needs_build()
    os.utime(source)  # touched now
    assert project.needs_build()


def test_a_build_runs_the_command_in_the_project_with_essas_python(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHON", raising=False)
    command = '"$PYTHON" -c "import sys; open(\'a.wasm\', \'wb\').write(bytes([0, 97, 115, 109, 1, 0, 0, 0]))"'
    project = load_project(write(tmp_path, f'[project]\nname = "a"\n[build]\ncommand = """{command}"""\n'))
    monkeypatch.chdir(tmp_path.parent)  # the build runs in the project's directory anyway
    with open(tmp_path / "build.log", "w") as log:
        built = project.build(output=log)
    assert (built.path, built.size) == (tmp_path.resolve() / "a.wasm", 8)


@pytest.mark.parametrize("command, message", [
    ("exit 3", "the build failed (exit status 3): exit 3"),
    ("true", "the build wrote no a.wasm"),
    ("echo hello > a.wasm", "not a WebAssembly module"),
])
def test_a_failed_build_says_why_in_one_line(tmp_path, command, message):
    project = load_project(write(tmp_path, f'[project]\nname = "a"\n[build]\ncommand = "{command}"\n'))
    with open(tmp_path / "build.log", "w") as log, pytest.raises(EssaError) as raised:
        project.build(output=log)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_no_command_is_said(tmp_path):
    project = load_project(write(tmp_path, '[project]\nname = "a"\n'))
    with pytest.raises(EssaError, match="no .build. command"):
        project.build()

