"""Supervisor details that need no processes."""

from __future__ import annotations

from pathlib import Path

from starters.stack.supervisor import _failure_line


def test_failure_line_is_the_error_of_the_latest_start_not_a_stack_frame(tmp_path: Path) -> None:
    log = tmp_path / "temporal.log"
    log.write_text(
        "\n--- 2026-11-24 21:30:01 starting temporal\n"
        'time=1 level=ERROR msg="an old failure"\n'
        "\n--- 2026-11-24 21:30:11 starting temporal\n"
        'time=2 level=INFO msg="starting"\n'
        'time=3 level=ERROR msg="Failed to start gRPC listener" error="listen tcp '
        '127.0.0.1:35877: bind: address already in use"\n'
        "panic: runtime error: invalid memory address or nil pointer dereference\n"
        "\tservice.go:94 +0x299\n"
    )
    line = _failure_line(log)
    assert "address already in use" in line and "old failure" not in line


def test_failure_line_without_an_error_is_the_last_line(tmp_path: Path) -> None:
    log = tmp_path / "anvil.log"
    log.write_text("\n--- 2026-11-24 starting anvil\nListening on 127.0.0.1:8545\nbye\n")
    assert _failure_line(log) == "bye"
    assert _failure_line(tmp_path / "missing.log") == "no log"
