"""Supervisor details that need no processes."""

from __future__ import annotations

from pathlib import Path

from starters.stack.supervisor import _failure_line, backoff


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


def test_failure_line_finds_a_python_error_and_a_traceback_s_exception(tmp_path: Path) -> None:
    log = tmp_path / "mcp.log"
    log.write_text(
        "\n--- 2026-12-07 13:33:01 starting mcp\n"
        "2026-12-07 13:33:04,222 INFO uvicorn.error: Started server process [13862]\n"
        "2026-12-07 13:33:04,234 ERROR uvicorn.error: [Errno 98] error while attempting to bind "
        "on address ('127.0.0.1', 35425): address already in use\n"
        "2026-12-07 13:33:04,235 INFO uvicorn.error: Application shutdown complete.\n"
    )
    assert "address already in use" in _failure_line(log)
    log.write_text(
        "\n--- 2026-12-07 13:33:01 starting worker\n"
        "Traceback (most recent call last):\n"
        '  File "workers/main.py", line 3, in <module>\n'
        "    connect()\n"
        "RuntimeError: Failed client connect: connection refused\n"
        "sys:1: RuntimeWarning: coroutine was never awaited\n"
    )
    assert _failure_line(log) == "RuntimeError: Failed client connect: connection refused"


def test_backoff_doubles_from_half_a_second_up_to_its_cap() -> None:
    assert [backoff(n, 30) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff(3, 2) == 2
