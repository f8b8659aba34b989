"""Running ``mlestar`` in-process as its console script does: the exit code and what it printed."""

from __future__ import annotations

import pytest

from mlestar.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``mlestar ARGV``: (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
