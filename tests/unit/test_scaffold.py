"""``essa new``: the files of a new project, and what it refuses.

Building and running the projects is tests/guests (tox -e guests, rust-guests, ts-guests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from essa.api.project import load_project
from essa.cli.scaffold import ASSEMBLYSCRIPT_VERSION, new_project
from essa.errors import EssaError

ROOT = Path(__file__).resolve().parents[2]


def test_a_c_project_has_source_header_build_script_and_readme(tmp_path):
    path = new_project("c", "hello", tmp_path)
    assert path == tmp_path / "hello"
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "build.sh", "essa.h", "essa.toml", "hello.c"]
    assert (path / "essa.h").read_bytes() == (ROOT / "guest" / "c" / "essa.h").read_bytes()
    source = (path / "hello.c").read_text()
    assert "ESSA_FUNCTION(greet)" in source and "int main(void)" in source and "{{" not in source
    build = (path / "build.sh").read_text()
    assert "-O2 -g0 " in build and " -s " not in build and "hello.c -o hello.wasm" in build
    assert "-m essa.wasm.debuginfo hello.wasm" in build  # debug info out, function names kept
    assert os.access(path / "build.sh", os.X_OK)
    readme = (path / "README.md").read_text()
    assert "first build compiles wasi-libc" in readme and "couple of minutes" in readme
    assert "-std=gnu11" in build  # POSIX functions (strtok_r, ...) are declared
    project = load_project(path / "essa.toml")
    assert (project.name, project.language, project.command, project.output, project.watch) == (
        "hello", "c", "sh build.sh", "hello.wasm", ("*.c", "*.h"))


def test_a_rust_project_depends_on_the_sdk_installed_with_essa(tmp_path):
    path = new_project("rust", "my-fn", tmp_path)
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert files == [".cargo/config.toml", ".gitignore", "Cargo.toml", "README.md", "build.sh", "essa.toml",
                     "src/main.rs"]
    cargo = (path / "Cargo.toml").read_text()
    assert 'name = "my-fn"' in cargo
    import essa

    sdk = Path(essa.__file__).parent / "sdk" / "rust"  # a link to guest/rust in a checkout
    assert f'essa-api = {{ path = "{sdk.resolve().as_posix()}/essa-api" }}' in cargo
    assert "#[essa_wrap(" in (path / "src" / "main.rs").read_text()
    assert 'target = "wasm32-wasi"' in (path / ".cargo" / "config.toml").read_text()
    assert "cp target/wasm32-wasi/release/my-fn.wasm my-fn.wasm" in (path / "build.sh").read_text()
    assert os.access(path / "build.sh", os.X_OK)
    assert not any("{{" in (path / f).read_text() for f in files)
    project = load_project(path / "essa.toml")
    assert (project.name, project.language, project.output, project.watch) == (
        "my-fn", "rust", "my-fn.wasm", ("src/**/*.rs", "Cargo.toml"))


def test_a_ts_project_depends_on_the_sdk_installed_with_essa_and_a_pinned_compiler(tmp_path):
    path = new_project("ts", "My-Fn", tmp_path)
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "asconfig.json", "assembly/index.ts", "build.sh", "essa.toml",
                     "package.json"]
    project = load_project(path / "essa.toml")
    assert (project.name, project.language, project.command, project.output) == ("My-Fn", "ts", "sh build.sh",
                                                                                  "My-Fn.wasm")
    package = json.loads((path / "package.json").read_text())
    import essa

    sdk = Path(essa.__file__).parent / "sdk" / "assemblyscript"  # a link to guest/assemblyscript in a checkout
    assert package["name"] == "my-fn"  # npm names are lower case
    assert package["devDependencies"] == {"@essa/as": f"file:{sdk.resolve().as_posix()}",
                                          "assemblyscript": ASSEMBLYSCRIPT_VERSION}
    config = json.loads((path / "asconfig.json").read_text())
    assert config["extends"] == "./node_modules/@essa/as/asconfig.json"
    assert config["targets"]["release"]["outFile"] == "My-Fn.wasm"
    source = (path / "assembly" / "index.ts").read_text()
    assert "@essa\nexport function greet(name: string): string" in source and "function main(): void" in source
    assert "npm run --silent build" in (path / "build.sh").read_text()
    assert os.access(path / "build.sh", os.X_OK)
    assert not any("{{" in (path / f).read_text() for f in files)


def test_the_typescript_projects_pin_one_compiler():
    # The examples, the template and the SDK's peer range agree on AssemblyScript.
    example = json.loads((ROOT / "examples" / "word-count-ts" / "package.json").read_text())
    assert example["devDependencies"]["assemblyscript"] == ASSEMBLYSCRIPT_VERSION
    lock = json.loads((ROOT / "examples" / "word-count-ts" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/assemblyscript"]["version"] == ASSEMBLYSCRIPT_VERSION
    sdk = json.loads((ROOT / "guest" / "assemblyscript" / "package.json").read_text())
    major, minor, _ = ASSEMBLYSCRIPT_VERSION.split(".")
    assert sdk["peerDependencies"]["assemblyscript"] == f">={major}.{minor}.0 <{major}.{int(minor) + 1}.0"


def test_sdk_names_another_copy_of_the_assemblyscript_sdk(tmp_path):
    package = (new_project("ts", "a", tmp_path, sdk=ROOT / "guest" / "assemblyscript") / "package.json").read_text()
    assert f'"file:{(ROOT / "guest" / "assemblyscript").resolve().as_posix()}"' in package


def test_the_sdks_ship_inside_the_package():
    # What makes `essa new` work from a pip install: package data, not the checkout.
    import essa

    package = Path(essa.__file__).parent
    assert (package / "sdk" / "c" / "essa.h").is_file()
    assert (package / "sdk" / "rust" / "essa-api" / "Cargo.toml").is_file()
    assert (package / "sdk" / "rust" / "essa-macros" / "src" / "lib.rs").is_file()
    assert (package / "sdk" / "assemblyscript" / "transform" / "index.js").is_file()
    assert (package / "sdk" / "assemblyscript" / "assembly" / "index.ts").is_file()


def test_sdk_names_another_copy_of_the_rust_sdk(tmp_path):
    sdk = tmp_path / "sdk"
    (sdk / "essa-api").mkdir(parents=True)
    (sdk / "essa-api" / "Cargo.toml").write_text("[package]\n")
    cargo = (new_project("rust", "a", tmp_path, sdk=sdk) / "Cargo.toml").read_text()
    assert f'path = "{sdk.resolve().as_posix()}/essa-api"' in cargo and "--sdk" in cargo
    # the crate directory itself is understood too
    cargo = (new_project("rust", "b", tmp_path, sdk=sdk / "essa-api") / "Cargo.toml").read_text()
    assert f'path = "{sdk.resolve().as_posix()}/essa-api"' in cargo


def one_line_error(excinfo, *fragments: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_an_existing_directory_is_never_overwritten(tmp_path):
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "hello.c").write_text("mine")
    with pytest.raises(EssaError) as excinfo:
        new_project("c", "hello", tmp_path)
    one_line_error(excinfo, "already exists")
    assert [p.name for p in (tmp_path / "hello").iterdir()] == ["hello.c"]
    assert (tmp_path / "hello" / "hello.c").read_text() == "mine"


@pytest.mark.parametrize("name", ["", "a b", "../up", "x/y", "-flag", "1st", ".hidden", "ü", "a" * 65])
def test_names_that_cannot_name_a_project_are_refused(tmp_path, name):
    with pytest.raises(EssaError) as excinfo:
        new_project("c", name, tmp_path)
    one_line_error(excinfo, "cannot name a project")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["fn", "test", "std", "essa-api", "self"])
def test_names_cargo_refuses_are_refused_for_rust_only(tmp_path, name):
    with pytest.raises(EssaError) as excinfo:
        new_project("rust", name, tmp_path)
    one_line_error(excinfo, "cannot name a Rust project")
    assert new_project("c", name, tmp_path).is_dir()


@pytest.mark.parametrize(
    "language, kwargs, fragment",
    [
        ("go", {}, "unknown language 'go'"),
        ("c", {"sdk": "."}, "--sdk is for Rust and TypeScript projects"),
        ("rust", {"sdk": "/nonexistent/sdk"}, "not essa's Rust SDK"),
        ("ts", {"sdk": "/nonexistent/sdk"}, "not essa's AssemblyScript SDK"),
        ("c", {"directory": "/nonexistent/dir"}, "no such directory"),
    ],
)
def test_bad_requests_are_refused_in_one_line(tmp_path, language, kwargs, fragment):
    kwargs.setdefault("directory", tmp_path)
    with pytest.raises(EssaError) as excinfo:
        new_project(language, "p", **kwargs)
    one_line_error(excinfo, fragment)
    assert not (tmp_path / "p").exists()
