"""The documentation stays true: worked examples encode as shown, links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from essa.state import lattice
from essa.state.bincode import decode_lattice, encode_lattice
from essa.state.timestamps import parse_timestamp

ROOT = Path(__file__).resolve().parents[2]

# A ```python block (one lattice expression) directly followed by a ```text
# block of hex bytes, each line's comment starting at '#'.
_EXAMPLE = re.compile(r"```python\n(?P<expr>.*?)\n```\s*```text\n(?P<hex>.*?)\n```", re.DOTALL)


def _examples(path: Path) -> list[tuple[str, bytes]]:
    examples = []
    for match in _EXAMPLE.finditer(path.read_text()):
        hex_text = "".join(line.split("#", 1)[0] for line in match.group("hex").splitlines())
        examples.append((match.group("expr").strip(), bytes.fromhex(hex_text)))
    return examples


LATTICE_EXAMPLES = _examples(ROOT / "docs" / "lattice-encoding.md")


def test_the_encoding_page_has_its_worked_examples():
    assert len(LATTICE_EXAMPLES) >= 10


@pytest.mark.parametrize("expr, expected", LATTICE_EXAMPLES, ids=[e for e, _ in LATTICE_EXAMPLES])
def test_worked_example_encodes_and_decodes_as_documented(expr, expected):
    namespace = {name: getattr(lattice, name) for name in dir(lattice) if name.endswith("Lattice")}
    value = eval(expr, {"parse_timestamp": parse_timestamp, **namespace})
    assert encode_lattice(value).hex() == expected.hex()
    assert decode_lattice(expected) == value


_DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted(ROOT.glob("guest/*/README.md")),
              *sorted(ROOT.glob("plugins/*/README.md"))]
_LINK = re.compile(r"\]\((?!https?:|mailto:|#)([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", _DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files_in_the_repository(document):
    missing = [target for target in _LINK.findall(document.read_text())
               if not (document.parent / target).resolve().exists()]
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"


def _quick_start_commands() -> list[str]:
    """The README quick start's two commands: install and run, then test."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, re.DOTALL)
    return [block.strip() for block in blocks]


def test_ci_runs_exactly_the_readme_quick_start_commands():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == commands


def test_the_test_command_installs_tox_from_the_pinned_constraints():
    test_command = _quick_start_commands()[1]
    assert "-c constraints/test.txt tox" in test_command
    pins = (ROOT / "constraints" / "test.txt").read_text()
    for package in ("tox", "virtualenv", "pip", "setuptools", "wasmtime", "pytest", "hypothesis"):
        assert re.search(rf"^{package}==\S+", pins, re.MULTILINE), f"{package} is not pinned"
