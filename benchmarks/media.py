"""Offline mlestar against a plain baseline on the image and audio competitions, at the same budget.

    python benchmarks/media.py .bench/media --time-limit 300          # all four competitions
    python benchmarks/media.py .bench/media --only shapes tones

The baseline is what a first attempt looks like: logistic regression on the raw pixels (images,
resized to 32 x 32) or on the mean MFCCs of each clip (audio), fitted on every training row. Both are
graded on the private answers; the table prints test accuracy and mlestar's ratio to the baseline.
``shapes`` and ``tones`` are the examples the expert was developed on; ``digits-moved`` and
``pulses`` were not looked at while tuning it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from media_builders import COMPETITIONS, build_media
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mlestar
from mlestar.grading import grade_submission
from mlestar.task import load_task


def _image_matrix(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32)), dtype=np.float32).ravel() / 255
                     for p in paths])


def _mfcc_means(paths: list[Path]) -> np.ndarray:
    """Mean of 20 MFCCs over each clip (a 40-band mel spectrogram, 512-sample frames)."""
    from scipy.fft import dct
    from scipy.io import wavfile
    from scipy.signal import stft

    rows = []
    for path in paths:
        rate, data = wavfile.read(path)
        data = data.astype(np.float32) / 32768.0
        freqs, _, spec = stft(data, rate, nperseg=512)
        mel_edges = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), 42) / 2595) - 1)
        power = np.abs(spec) ** 2
        bands = np.stack([power[(freqs >= lo) & (freqs < hi)].sum(axis=0)
                          for lo, hi in zip(mel_edges[:-2], mel_edges[2:], strict=True)])
        rows.append(dct(np.log(bands + 1e-10), axis=0, norm="ortho")[:20].mean(axis=1))
    return np.stack(rows)


def baseline(folder: Path) -> float:
    """Test accuracy of logistic regression on raw pixels / mean MFCCs."""
    task = load_task(folder)
    media = task.media
    assert media is not None
    answers = pd.read_csv(task.answers_file)
    target = task.target
    if media.layout == "class_folders":
        rows = [(p, p.parent.name) for p in sorted((folder / media.train_dir).rglob("*")) if p.is_file()]
        train_paths, labels = [p for p, _ in rows], [label for _, label in rows]
    else:
        train = pd.read_csv(folder / task.train_file)
        train_paths = [folder / media.train_pattern.format(id=v) for v in train[media.key_column]]
        labels = train[target].astype(str).tolist()
    key = media.key_column or task.id_column
    test_paths = [folder / media.test_pattern.format(id=v) for v in answers[key]]
    features = _image_matrix if media.kind == "image" else _mfcc_means
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    model.fit(features(train_paths), labels)
    return float((model.predict(features(test_paths)) == answers[target].astype(str)).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--time-limit", type=float, default=300.0, help="mlestar's budget per competition (s)")
    parser.add_argument("--only", nargs="*", default=list(COMPETITIONS))
    args = parser.parse_args(argv)
    rows = []
    for name in args.only:
        folder = build_media(name, args.workdir / "competitions" / name)
        started = time.time()
        plain = baseline(folder)
        plain_s = time.time() - started
        started = time.time()
        result = mlestar.run(folder, runs_dir=args.workdir / "runs", time_limit_s=args.time_limit)
        run_s = time.time() - started
        task = load_task(folder)
        graded = grade_submission(result.submission_path, task.answers_file, metric=task.metric,
                                  id_column=task.id_column) if result.submission_path else None
        score = graded.score if graded is not None else float("nan")
        rows.append((name, COMPETITIONS[name].group, plain, plain_s, score, run_s, result.best_score))
        print(f"{name}: baseline {plain:.4f} ({plain_s:.0f}s), mlestar {score:.4f} ({run_s:.0f}s)", flush=True)
    print("\n| competition | tuned on | baseline accuracy | mlestar accuracy | ratio | mlestar wall s | validation |")
    print("|---|---|---|---|---|---|---|")
    for name, group, plain, _plain_s, score, run_s, valid in rows:
        tuned = "yes" if group == "example" else "no"
        print(f"| {name} | {tuned} | {plain:.4f} | {score:.4f} | {score / plain:.2f} | {run_s:.0f} | {valid} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
