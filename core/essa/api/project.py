"""``essa.toml``, the project file: what a function project is called, how it is built, what it may use.

``essa new c|rust|ts NAME`` writes one; ``essa build`` runs its build command,
``essa deploy`` (no arguments) deploys its output under its name, ``essa dev``
rebuilds and redeploys it as its sources change. The commands find it in the
current directory or a parent. Every key but ``[project] name`` is optional::

    [project]
    name = "hello"                # the deployment's name
    language = "c"                # c, rust, ts or other: the defaults below

    [build]
    command = "sh build.sh"       # a shell command line, run in the project's directory
    output = "hello.wasm"         # the module it writes (default: NAME.wasm)
    watch = ["*.c", "*.h"]        # what `essa dev` watches (globs; each language has defaults)

    [limits]                      # for the runtime `essa dev` starts (a cluster's executors set their own)
    time = "30s"                  # as --time-limit ("none": no limit)
    memory = "256M"               # as --memory-limit
    max-message-size = "64M"
    output = "64M"                # as --output-limit

    [grants]                      # for `essa dev` too: what its guests may reach on this machine
    dirs = ["data:/data:ro"]      # as --dir, HOST relative to the project's directory
    env = ["LANG=C.UTF-8"]        # as --env

    [dev]
    http = "127.0.0.1:8080"       # where `essa dev` answers HTTP

    [functions.greet]             # one table per function: what essa knows of it (e.g. its signature)

The ``[functions]`` tables are read as they are (:attr:`Project.functions`)
for the parts of essa that describe functions; everything else is checked
here, and a key or value essa does not know is refused in one line naming
it, never ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from essa.cluster.deployments import check_name
from essa.cluster.programs import read_module
from essa.errors import EssaError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The project file's name.
FILENAME = "essa.toml"

#: What each language's project builds with and watches, unless essa.toml says otherwise.
LANGUAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "c": {"command": "sh build.sh", "watch": ("*.c", "*.h")},
    "rust": {"command": "sh build.sh", "watch": ("src/**/*.rs", "Cargo.toml")},
    "ts": {"command": "sh build.sh", "watch": ("assembly/**/*.ts", "package.json", "asconfig.json")},
    "other": {"command": None, "watch": ("**/*",)},
}

#: Directories ``essa dev`` never watches (build trees, version control, virtual environments).
NOT_WATCHED = (".git", ".hg", ".svn", "target", "node_modules", "__pycache__", ".venv", "venv", "zig-cache",
               ".zig-cache")

#: The keys of each table (the [limits] keys map to the --time-limit ... flags).
_TABLES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "project": {"name": str, "language": str},
    "build": {"command": str, "output": str, "watch": list},
    "limits": {"time": (str, int, float), "memory": (str, int), "max-message-size": (str, int),
               "output": (str, int)},
    "grants": {"dirs": list, "env": list},
    "dev": {"http": str},
}


@dataclass(frozen=True)
class Project:
    """An ``essa.toml`` and what it says."""

    #: The project file.
    path: Path
    name: str
    language: str
    #: The build command (a shell command line), or ``None``: the output is built some other way.
    command: str | None
    #: The module the build writes, relative to the project's directory.
    output: str
    #: Globs of the files ``essa dev`` watches, relative to the project's directory.
    watch: tuple[str, ...]
    #: ``[limits]``: the ``--time-limit`` ... flags' values by flag name (``time_limit``, ``memory_limit``, ...).
    limits: Mapping[str, str] = field(default_factory=dict)
    #: ``[grants]``: ``--dir`` values (hosts made absolute) and ``--env`` values.
    dirs: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    #: ``[dev] http``: where ``essa dev`` answers HTTP (``None``: the trigger's default).
    http: str | None = None
    #: ``[functions.NAME]`` tables, as they are.
    functions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def output_path(self) -> Path:
        return self.directory / self.output

    def limit_flags(self) -> dict[str, Any]:
        """The limit and grant options as :func:`essa.cli.options.limits_and_grants` takes them."""
        return {"time_limit": self.limits.get("time_limit"), "memory_limit": self.limits.get("memory_limit"),
                "max_message_size": self.limits.get("max_message_size"),
                "output_limit": self.limits.get("output_limit"), "dirs": self.dirs, "env": self.env}

    # -- sources ---------------------------------------------------------------------

    def sources(self) -> dict[str, tuple[int, int]]:
        """The files ``essa dev`` watches: relative path -> (modification time in ns, size)."""
        found: dict[str, tuple[int, int]] = {}
        output = self.output_path.resolve()
        for pattern in self.watch:
            for path in self.directory.glob(pattern):
                relative = path.relative_to(self.directory)
                if any(part in NOT_WATCHED or part.startswith(".") for part in relative.parts[:-1]):
                    continue
                try:
                    if not path.is_file() or path.resolve() == output:
                        continue
                    stat = path.stat()
                except OSError:  # removed meanwhile
                    continue
                found[relative.as_posix()] = (stat.st_mtime_ns, stat.st_size)
        return found

    def needs_build(self) -> bool:
        """Whether the output is missing, or older than a watched source or ``essa.toml``."""
        try:
            built = self.output_path.stat().st_mtime_ns
        except OSError:
            return True
        newest = max([self.path.stat().st_mtime_ns, *(mtime for mtime, _size in self.sources().values())])
        return newest > built

    # -- building --------------------------------------------------------------------

    def build(self, output: Any = None) -> "Built":
        """Run the build command in the project's directory, then check the output is a Wasm module.

        The command runs in a shell with ``$PYTHON`` set to this Python unless
        set already (C projects build with ``$PYTHON -m ziglang``, installed
        beside essa). Its output goes to ``output`` (a file; default: this
        process's stdout and stderr).

        :raises EssaError: no command, the command failed (its exit status),
            or no Wasm module where ``output`` says.
        """
        if self.command is None:
            raise EssaError(f"{self.path}: no [build] command: build {self.output} yourself, or give the command "
                            "that does")
        env = {**os.environ}
        env.setdefault("PYTHON", sys.executable)
        started = time.monotonic()
        try:
            status = subprocess.run(self.command, shell=True, cwd=self.directory, env=env, stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=subprocess.STDOUT if output is not None else None).returncode
        except OSError as exc:
            raise EssaError(f"cannot run the build command {self.command!r}: {exc.strerror}") from None
        if status != 0:
            why = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            raise EssaError(f"the build failed ({why}): {self.command}")
        if not self.output_path.exists():
            raise EssaError(f"the build wrote no {self.output} (the [build] output of {self.path})")
        wasm = read_module(str(self.output_path))
        return Built(self.output_path, len(wasm), time.monotonic() - started)


@dataclass(frozen=True)
class Built:
    """What a build made: the module, its size, and how long the build took."""

    path: Path
    size: int
    seconds: float


def find_project(start: str | os.PathLike | None = None) -> Path | None:
    """The ``essa.toml`` of ``start`` (default: the current directory) or of its nearest parent that has one."""
    directory = Path(start or Path.cwd()).resolve()
    for candidate in (directory, *directory.parents):
        path = candidate / FILENAME
        if path.is_file():
            return path
    return None


def open_project(start: str | os.PathLike | None = None) -> Project:
    """The project around ``start`` (see :func:`find_project`); a one-line :class:`EssaError` if there is none."""
    path = find_project(start)
    if path is None:
        raise EssaError(f"no {FILENAME} here or in a parent directory (`essa new c|rust|ts NAME` makes a project)")
    return load_project(path)


def load_project(path: str | os.PathLike) -> Project:
    """The project ``path`` (an ``essa.toml``) describes; a one-line :class:`EssaError` for anything wrong in it."""
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EssaError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise EssaError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise EssaError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    for table, value in data.items():
        if table == "functions":
            continue
        if table not in _TABLES:
            raise EssaError(f"{where}: unknown table [{table}] (tables: {', '.join([*_TABLES, 'functions'])})")
        if not isinstance(value, dict):
            raise EssaError(f"{where}: {table} must be a table ([{table}])")
        for key, item in value.items():
            kinds = _TABLES[table].get(key)
            if kinds is None:
                raise EssaError(f"{where}: [{table}] has no key {key!r} (keys: {', '.join(_TABLES[table])})")
            if not isinstance(item, kinds) or isinstance(item, bool):
                raise EssaError(f"{where}: [{table}] {key} cannot be {item!r}")
    project, build = data.get("project", {}), data.get("build", {})
    if "name" not in project:
        raise EssaError(f"{where}: [project] needs a name (the deployment's name)")
    try:
        name = check_name(project["name"])
    except EssaError as exc:
        raise EssaError(f"{where}: [project] name: {exc}") from None
    language = project.get("language", "other")
    if language not in LANGUAGE_DEFAULTS:
        raise EssaError(f"{where}: [project] language {language!r} is none of {', '.join(LANGUAGE_DEFAULTS)}")
    defaults = LANGUAGE_DEFAULTS[language]
    watch = build.get("watch", defaults["watch"])
    if not all(isinstance(glob, str) and glob and not Path(glob).is_absolute() for glob in watch):
        raise EssaError(f"{where}: [build] watch is a list of globs relative to the project, as in [\"src/*.c\"]")
    output = build.get("output", f"{name}.wasm")
    if Path(output).is_absolute() or ".." in Path(output).parts:
        raise EssaError(f"{where}: [build] output {output!r} must lie in the project's directory")
    limits = {f"{key.replace('-', '_')}{'' if key == 'max-message-size' else '_limit'}": str(value)
              for key, value in data.get("limits", {}).items()}
    grants = data.get("grants", {})
    for key in ("dirs", "env"):
        if not all(isinstance(item, str) for item in grants.get(key, [])):
            raise EssaError(f"{where}: [grants] {key} is a list of text, as for --{key.rstrip('s')}")
    dirs = tuple(_project_dir(path.parent, spec) for spec in grants.get("dirs", []))
    functions = data.get("functions", {})
    if not isinstance(functions, dict) or not all(isinstance(f, dict) for f in functions.values()):
        raise EssaError(f"{where}: [functions] holds one table per function, as in [functions.greet]")
    return Project(path, name, language, build.get("command", defaults["command"]), output, tuple(watch), limits,
                   dirs, tuple(grants.get("env", [])), data.get("dev", {}).get("http"), functions)


def _project_dir(directory: Path, spec: str) -> str:
    """A ``--dir`` grant ``HOST[:GUEST][:ro]`` whose HOST is relative to the project's directory, HOST made
    absolute (GUEST stays as written; a malformed one is left for the --dir parser to refuse)."""
    parts = spec.split(":")
    mode = [parts.pop()] if len(parts) > 1 and parts[-1] in ("ro", "rw") else []
    if not parts[0] or len(parts) > 2:
        return spec
    guest = parts[1] if len(parts) == 2 and parts[1] else parts[0]
    return ":".join([str((directory / parts[0]).resolve()), guest, *mode])


__all__ = ["FILENAME", "LANGUAGE_DEFAULTS", "Built", "Project", "find_project", "load_project", "open_project"]
