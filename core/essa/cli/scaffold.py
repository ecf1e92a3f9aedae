"""``essa new``: write a ready-to-build function project in C, Rust or TypeScript.

:func:`new_project` fills the templates in ``essa/templates/<language>/``
(package data) into a new directory. Template files end in ``.tmpl``; in
their paths ``NAME`` becomes the project's name and a ``dot-`` prefix a dot
(``dot-cargo/config.toml.tmpl`` -> ``.cargo/config.toml``); in their text
``{{name}}``, ``{{sdk}}`` and ``{{sdk_origin}}`` are replaced.

The SDKs come with essa (package data ``essa/sdk``, links to ``guest/`` in
the repository), so a project can be made and built from a pip install:

- a C project gets its own copy of ``essa.h``: one header, nothing to keep
  in sync with the environment, and the project builds anywhere;
- a Rust project depends on the SDK crates by absolute path, by default the
  ones installed with essa (``--sdk PATH`` names another copy, such as a
  checkout's ``guest/rust``). Copying three crates into every project would
  make it self-contained but leave it on an old SDK forever; the price of the
  path is that the project must be pointed elsewhere if that directory moves;
- a TypeScript project depends on the AssemblyScript SDK (``@essa/as``) the
  same way, as a ``file:`` dependency by absolute path (``--sdk PATH`` too),
  and on the AssemblyScript compiler from the npm registry at the version the
  SDK is built and tested with (:data:`ASSEMBLYSCRIPT_VERSION`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from essa import __version__
from essa.errors import EssaError

#: The languages ``essa new`` writes projects for.
LANGUAGES = ("c", "rust", "ts")

#: The AssemblyScript compiler a new TypeScript project pins (npm); the
#: examples' package.json pin the same one (tests/unit/test_scaffold.py checks).
ASSEMBLYSCRIPT_VERSION = "0.28.20"

#: Package data (templates, SDKs) lies beside the modules in any installation.
_PACKAGE = Path(__file__).resolve().parents[1]  # the essa package, which holds sdk/ and templates/

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")

#: Names cargo refuses for a package, or that clash with a crate the project uses.
_RUST_RESERVED = frozenset(
    "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match "
    "mod move mut pub ref return self Self static struct super trait true type unsafe use where while "
    "abstract become box do final macro override priv try typeof unsized virtual yield "
    "test std core alloc proc_macro essa_api essa_macros anna_api serde bincode".split()
)


def check_name(language: str, name: str) -> None:
    """Refuse, in one line, a project name that cannot name a directory, a file and a crate."""
    if not _NAME.fullmatch(name):
        raise EssaError(
            f"{name!r} cannot name a project: use up to 64 letters, digits, '-' and '_', starting with a letter"
        )
    if language == "rust" and name.replace("-", "_") in _RUST_RESERVED:
        raise EssaError(f"{name!r} cannot name a Rust project: it is a Rust keyword or the name of a crate it uses")


def installed_sdk(language: str) -> Path:
    """The directory of the SDK for ``language`` that came with essa (``essa/sdk/<language>``)."""
    path = _PACKAGE / "sdk" / language
    if not path.is_dir():
        raise EssaError(f"essa's {language} SDK is missing from this installation ({path}); reinstall essa-wasm")
    return path.resolve()


def rust_sdk(sdk: str | os.PathLike | None) -> tuple[Path, str]:
    """The Rust SDK directory to depend on, and a phrase saying where it comes from."""
    if sdk is None:
        return installed_sdk("rust"), f"the copy installed with essa-wasm {__version__}"
    path = Path(sdk).expanduser().resolve()
    if path.name == "essa-api" and (path / "Cargo.toml").is_file():
        path = path.parent  # pointed at the crate itself
    if not (path / "essa-api" / "Cargo.toml").is_file():
        raise EssaError(f"{sdk}: not essa's Rust SDK (no essa-api/Cargo.toml in it; a checkout has it in guest/rust)")
    return path, f"given with --sdk {sdk}"


def assemblyscript_sdk(sdk: str | os.PathLike | None) -> tuple[Path, str]:
    """The AssemblyScript SDK directory (``@essa/as``) to depend on, and a phrase saying where it comes from."""
    if sdk is None:
        return installed_sdk("assemblyscript"), f"the copy installed with essa-wasm {__version__}"
    path = Path(sdk).expanduser().resolve()
    if not (path / "transform" / "index.js").is_file() or not (path / "package.json").is_file():
        raise EssaError(f"{sdk}: not essa's AssemblyScript SDK (no package.json and transform/index.js in it; "
                        "a checkout has it in guest/assemblyscript)")
    return path, f"given with --sdk {sdk}"


def new_project(
    language: str, name: str, directory: str | os.PathLike = ".", sdk: str | os.PathLike | None = None
) -> Path:
    """Write a new project ``directory/name`` for ``language`` (``"c"``, ``"rust"`` or ``"ts"``); return its path.

    :param sdk: Rust and TypeScript: the SDK directory to depend on (Rust:
        with ``essa-api/`` in it; TypeScript: ``@essa/as``, a checkout's
        ``guest/assemblyscript``); default: the one installed with essa.
    :raises EssaError: an unknown language, a bad name, ``directory`` missing,
        the project directory existing already (nothing is overwritten), or an
        unusable ``sdk``; the message is one line.
    """
    if language not in LANGUAGES:
        raise EssaError(f"unknown language {language!r} (essa new writes {', '.join(LANGUAGES)} projects)")
    check_name(language, name)
    if sdk is not None and language == "c":
        raise EssaError("--sdk is for Rust and TypeScript projects (a C project gets its own copy of essa.h)")
    parent = Path(directory)
    if not parent.is_dir():
        raise EssaError(f"{parent}: no such directory")
    values = {"name": name}
    if language == "rust":
        sdk_path, origin = rust_sdk(sdk)
        values.update(sdk=sdk_path.as_posix(), sdk_origin=origin)
    elif language == "ts":
        sdk_path, origin = assemblyscript_sdk(sdk)
        # npm package names are lower case
        values.update(sdk=sdk_path.as_posix(), sdk_origin=origin, package=name.lower(),
                      assemblyscript=ASSEMBLYSCRIPT_VERSION)
    header = installed_sdk("c") / "essa.h" if language == "c" else None
    target = parent / name
    try:
        target.mkdir()
    except FileExistsError:
        raise EssaError(f"{target} already exists; essa new never overwrites (choose another name or --dir)") from None
    except OSError as exc:
        raise EssaError(f"cannot create {target}: {exc.strerror}") from None
    try:
        _fill(_PACKAGE / "templates" / language, target, values)
        if header is not None:
            shutil.copyfile(header, target / "essa.h")
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)  # ours: made above
        if isinstance(exc, OSError):
            raise EssaError(f"cannot write the project in {target}: {exc}") from None
        raise
    return target


def _fill(templates: Path, target: Path, values: dict[str, str]) -> None:
    """Write every ``.tmpl`` file below ``templates`` into ``target``, names and text filled in."""
    for entry in sorted(templates.iterdir()):
        out_name = entry.name.replace("NAME", values["name"])
        if out_name.startswith("dot-"):
            out_name = "." + out_name[4:]
        if entry.is_dir():
            (target / out_name).mkdir()
            _fill(entry, target / out_name, values)
            continue
        if not out_name.endswith(".tmpl"):
            continue
        text = entry.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = target / out_name[: -len(".tmpl")]
        path.write_text(text, encoding="utf-8")
        if path.suffix == ".sh":
            path.chmod(0o755)


def describe(path: Path) -> list[str]:
    """The files of a project, relative to it, for a listing."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
