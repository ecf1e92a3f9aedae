"""essa.wasm.debuginfo: debug info out, function names kept; the committed example modules have names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from essa.wasm.binary import encode_u32, read_u32, section_spans
from essa.wasm.debuginfo import main, without_debug_info

ROOT = Path(__file__).resolve().parents[2]
HEADER = b"\0asm\x01\0\0\0"


def custom(name: str, payload: bytes = b"x") -> bytes:
    body = encode_u32(len(name)) + name.encode() + payload
    return b"\0" + encode_u32(len(body)) + body


def custom_names(wasm: bytes) -> list[str]:
    names = []
    for section_id, _start, body, _end in section_spans(wasm):
        if section_id == 0:
            length, at = read_u32(wasm, body)
            names.append(wasm[at : at + length].decode())
    return names


TYPE_SECTION = b"\x01\x04\x01\x60\x00\x00"  # one type: () -> ()


def test_debug_sections_go_and_everything_else_stays_in_order():
    wasm = HEADER + TYPE_SECTION + custom(".debug_info", b"\1" * 5000) + custom("name", b"names") + \
        custom(".debug_line") + custom("producers") + custom("sourceMappingURL")
    stripped = without_debug_info(wasm)
    assert stripped == HEADER + TYPE_SECTION + custom("name", b"names") + custom("producers")
    assert without_debug_info(stripped) == stripped


def test_the_command_rewrites_files_in_place_and_names_a_bad_one(tmp_path, capsys):
    good = tmp_path / "f.wasm"
    good.write_bytes(HEADER + custom(".debug_str") + custom("name"))
    bad = tmp_path / "notes.txt"
    bad.write_text("not wasm")
    assert main([str(good), str(bad), str(tmp_path / "missing.wasm")]) == 1
    assert good.read_bytes() == HEADER + custom("name")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"essa: error: {bad}: not a Wasm module (not a Wasm 1.0 binary module)",
                     f"essa: error: {tmp_path / 'missing.wasm'}: No such file or directory"]
    usage = subprocess.run([sys.executable, "-m", "essa.wasm.debuginfo"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage:" in usage.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("**/*.wasm")), ids=lambda p: p.name)
def test_every_example_module_keeps_its_function_names_and_no_debug_info(path):
    names = custom_names(path.read_bytes())
    assert "name" in names, f"{path.name} has no name section: traps in it cannot say where they happened"
    assert not any(n.startswith(".debug") for n in names), names
