"""``mlestar run`` / ``mlestar resume`` with the scripted brain, for the kill -9 test:

    python kill9_driver.py run COMPETITION RUNS_DIR RUN_ID
    python kill9_driver.py resume RUNS_DIR RUN_ID

The real pipeline, store, executor and sandbox; scripts that take a fraction of a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

from competitions import TINY_CONFIG
from scripted import ScriptedBrain

import mlestar

CONFIG = {**TINY_CONFIG, "leakage_check": "off", "debug_retries": 1}


def main(argv: list[str]) -> None:
    if argv[0] == "run":
        competition, runs_dir, run_id = argv[1:4]
        mlestar.run(
            Path(competition), run_id=run_id, brain=ScriptedBrain(), runs_dir=Path(runs_dir), **CONFIG
        )
    elif argv[0] == "resume":
        runs_dir, run_id = argv[1:3]
        mlestar.resume(run_id, runs_dir=Path(runs_dir), brain=ScriptedBrain())
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
