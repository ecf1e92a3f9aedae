"""essa.wasm.traps: where a guest trapped, in one short line, for every engine alike."""

from __future__ import annotations

from essa.wasm.traps import trap_location


def test_the_innermost_frame_then_the_guests_callers():
    assert trap_location(["abort", "check", "essa_function_export_tally", "_start"]) == (
        " (in abort <- check <- essa_function_export_tally <- ...)")
    assert trap_location(["tally"]) == " (in tally)"
    assert trap_location([]) == ""
    assert trap_location(["<wasm function 32>", "<wasm function 7>"]) == " (in <wasm function 32> <- <wasm function 7>)"


def test_a_rust_panics_machinery_is_skipped_and_symbol_hashes_dropped():
    frames = [
        "rust_panic", "std::panicking::rust_panic_with_hook::h6ac9107c42850161",
        "std::panicking::begin_panic_handler::{{closure}}::h8ef066ac4d1e7406",
        "std::sys_common::backtrace::__rust_end_short_backtrace::h42ab4cf7df7f372f", "rust_begin_unwind",
        "core::panicking::panic_fmt::h768731f43edd91bf", "word_count::count::h0123456789abcdef",
        "__essa_wrapper__count_words", "__essa_wrapper__count_words.command_export",
    ]
    assert trap_location(frames) == " (in rust_panic <- word_count::count <- __essa_wrapper__count_words <- ...)"


def test_deep_recursion_is_one_frame_and_one_short_line():
    assert trap_location(iter(["rec"] * 500 + ["main"])) == " (in rec <- main)"
    assert trap_location(iter(["rec"] * 1_000_000 + ["main"])) == " (in rec)"  # looks at 1,000 frames at most
