"""How much `mlestar predict` saves by loading the expert final script's fitted models.

Writes the expert brain's final script for one model card on a synthetic competition, runs it in
final mode (it trains and keeps what it fits in ./final/fitted), then runs the same script again with
those models linked at ./fitted (what `mlestar predict` does) and prints both wall times, their
ratio and whether the two submissions are byte for byte the same.

    python benchmarks/predict_reuse.py [--rows 20000] [--card lightgbm] [--kind binary]
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from competitions import make_competition  # noqa: E402

from mlestar.brain.expert import ExpertBrain  # noqa: E402
from mlestar.brain.protocol import BrainContext, ModelCard  # noqa: E402
from mlestar.core.contract import FINAL_DIR, FITTED_DIR, SUBMISSION_NAME  # noqa: E402
from mlestar.exec.models import ExecLimits  # noqa: E402
from mlestar.exec.sandbox import run_script  # noqa: E402
from mlestar.exec.workspace import build_input_dir, prepare_script_dir  # noqa: E402
from mlestar.pipeline.split import write_folds  # noqa: E402
from mlestar.task import load_task  # noqa: E402
from mlestar.task.views import input_view  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="training rows")
    parser.add_argument("--card", default="lightgbm", help="expert model card")
    parser.add_argument("--kind", default="binary", choices=("binary", "multiclass", "regression", "text"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlestar-predict-reuse-") as scratch:
        root = Path(scratch)
        task = load_task(make_competition(root / "competition", args.kind, n_rows=args.rows))
        folds = write_folds(task, root / "folds.csv", seed=0)
        final_input = build_input_dir(
            root / "final-input", input_view(task, final=True).links, folds_csv=folds
        )
        ctx = BrainContext(
            task=task,
            seed=0,
            n_dev_rows=args.rows,
            script_timeout_s=3600,
            threads=args.threads,
            available_packages=["sklearn", "lightgbm", "xgboost", "catboost"],
        )
        brain = ExpertBrain()
        final = brain.write_submission(ctx, brain.write_candidate(ctx, ModelCard(name=args.card)))
        limits = ExecLimits(timeout_s=3600, threads=args.threads, memory_mb=8192)

        trained = prepare_script_dir(root / "final", final.code, final_input)
        started = time.monotonic()
        first = run_script(trained, limits)
        train_s = time.monotonic() - started
        if first.returncode != 0:
            print(first.stderr[-3000:])
            return 1
        loaded = prepare_script_dir(root / "predict", final.code, final_input)
        (loaded / FITTED_DIR).symlink_to(trained / FINAL_DIR / FITTED_DIR, target_is_directory=True)
        started = time.monotonic()
        second = run_script(loaded, limits)
        load_s = time.monotonic() - started
        if second.returncode != 0:
            print(second.stderr[-3000:])
            return 1
        same = filecmp.cmp(
            trained / FINAL_DIR / SUBMISSION_NAME, loaded / FINAL_DIR / SUBMISSION_NAME, shallow=False
        )
        fits = len(list((trained / FINAL_DIR / FITTED_DIR).iterdir()))
    print(f"{args.kind}, {args.rows} rows, card {args.card}: {fits} fitted models kept")
    ratio = train_s / load_s
    print(f"final run (trains): {train_s:.1f} s; predict run (loads): {load_s:.1f} s; ratio {ratio:.2f}")
    print(f"same submission: {same}; same validation score: {first.score == second.score}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
