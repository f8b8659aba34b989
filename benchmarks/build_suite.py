"""Build the benchmark suite into DEST and check it against the recorded checksums.

    python benchmarks/build_suite.py .bench/suite            # build every suite competition
    python benchmarks/build_suite.py .bench/suite --record   # (maintainers) re-record the checksums

The suite is not committed: it is rebuilt on demand from packaged data, and
``benchmarks/suite_checksums.json`` proves every machine gets the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from builders import build_competition, list_competitions, read_checksums

HERE = Path(__file__).resolve().parent
RECORD = HERE / "suite_checksums.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="folder to build into (one subfolder per competition)")
    parser.add_argument("names", nargs="*", help="competitions to build (default: the whole suite)")
    parser.add_argument("--record", action="store_true", help=f"write the checksums to {RECORD.name}")
    args = parser.parse_args(argv)
    names = args.names or list_competitions("suite")
    recorded = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}

    built: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for name in names:
        folder = build_competition(name, args.dest / name)
        built[name] = read_checksums(folder)
        expected = recorded.get(name)
        if args.record:
            status = "recorded"
        elif expected is None:
            status = "NOT RECORDED"
            problems.append(f"{name}: no checksums recorded in {RECORD.name}")
        elif expected != built[name]:
            differing = sorted(rel for rel in set(expected) | set(built[name]) if expected.get(rel) != built[name].get(rel))
            status = "MISMATCH"
            problems.append(f"{name}: files differ from the record: {', '.join(differing)}")
        else:
            status = "ok"
        print(f"{name:14s} {status:12s} {folder}")

    if args.record:
        recorded.update(built)
        RECORD.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {RECORD}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
