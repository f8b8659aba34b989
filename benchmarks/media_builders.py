"""Deterministic image and audio competitions, synthesised with a fixed seed or made from data that
ships with scikit-learn, laid out as Kaggle ships them.

    shapes       (example) coloured shapes on noisy backgrounds, PNGs in train/ and test/, train.csv of id,label
    tones        (example) five kinds of sound (steady, rising, falling, tremolo, beeps), wav in train/ and test/
    digits-moved (suite)   scikit-learn's handwritten digits moved around a larger noisy canvas, in class
                           folders train/<digit>/ with the test images in test/
    pulses       (suite)   how many clicks a clip holds (1-4), wav at two sample rates in one shared folder
                           named by a path column of train.csv and test.csv

PNGs are written with the standard library's zlib and wav files with ``wave``, so the bytes (and the
checksums) do not depend on the version of an image or audio package.
"""

from __future__ import annotations

import shutil
import struct
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from builders import ANSWERS_FILE, SEED, write_checksums

_MANAGED = ("train.csv", "test.csv", "sample_submission.csv", "description.md", "CHECKSUMS.sha256")
_FOLDERS = ("train", "test", "clips", "private")


@dataclass(frozen=True)
class MediaCompetition:
    name: str
    group: str  # "example" (in examples/) or "suite" (built on demand, never tuned on)
    kind: str  # image | audio
    build: Callable[..., None]  # (dest, **size)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit grey (H, W) or RGB (H, W, 3) PNG."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    rows = pixels.reshape(height, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
                     + chunk(b"IEND", b""))


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    data = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(data)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def _split(n: int, rng: np.random.Generator, test_share: float = 0.2) -> np.ndarray:
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[: int(round(n * test_share))]] = True
    return test


def _description(title: str, body: str, metric: str) -> str:
    return f"# {title}\n\n{body}\n\n## Evaluation\n\n{metric}\n"


_ACCURACY = "Submissions are evaluated on classification accuracy: the share of test files whose label is correct."


def _tables(dest: Path, labels: list[str], is_test: np.ndarray, key: list[str], key_name: str = "id") -> None:
    frame = pd.DataFrame({key_name: key, "label": labels})
    _write_csv(frame[~is_test].reset_index(drop=True), dest / "train.csv")
    test = frame[is_test].reset_index(drop=True)
    _write_csv(test[[key_name]], dest / "test.csv")
    _write_csv(test.assign(label=labels[0])[[key_name, "label"]], dest / "sample_submission.csv")
    _write_csv(test, dest / ANSWERS_FILE)


# --- images ----------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "cross", "ring")


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(float)
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    r = rng.uniform(0.14, 0.3) * size
    angle = rng.uniform(0, np.pi)
    u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
    v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    if kind == "circle":
        return u**2 + v**2 <= r**2
    if kind == "ring":
        d = np.sqrt(u**2 + v**2)
        return (d <= r) & (d >= 0.6 * r)
    if kind == "square":
        return (np.abs(u) <= 0.85 * r) & (np.abs(v) <= 0.85 * r)
    if kind == "cross":
        return ((np.abs(u) <= 0.3 * r) & (np.abs(v) <= r)) | ((np.abs(v) <= 0.3 * r) & (np.abs(u) <= r))
    # an equilateral triangle: three half-planes
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = angle + k * 2 * np.pi / 3
        inside &= (x - cx) * np.cos(a) + (y - cy) * np.sin(a) <= 0.5 * r
    return inside


def _build_shapes(dest: Path, n: int = 1000, size: int = 40) -> None:
    rng = np.random.default_rng(SEED)
    labels = [SHAPES[i] for i in rng.integers(0, len(SHAPES), n)]
    is_test = _split(n, rng)
    ids = [f"img_{i:04d}" for i in range(n)]
    for folder in ("train", "test"):
        (dest / folder).mkdir(parents=True)
    for i, label in enumerate(labels):
        background = rng.uniform(0, 1, 3)
        gradient = np.linspace(0, rng.uniform(-0.3, 0.3), size)[None, :, None]
        image = np.clip(background + gradient + rng.normal(0, 0.08, (size, size, 3)), 0, 1)
        colour = rng.uniform(0, 1, 3)
        while np.abs(colour - background).sum() < 0.6:  # a shape visible against its background
            colour = rng.uniform(0, 1, 3)
        image[_shape_mask(label, size, rng)] = colour
        write_png(dest / ("test" if is_test[i] else "train") / f"{ids[i]}.png", image * 255)
    _tables(dest, labels, is_test, ids)
    (dest / "description.md").write_text(_description(
        "Shapes", "Each image shows one shape (circle, square, triangle, cross or ring) of a random colour, size, "
        "place and rotation on a noisy background. `train.csv` gives the label of every image in `train/`; "
        "predict the label of every image in `test/` (`test.csv` lists their ids).", _ACCURACY))


def _build_digits_moved(dest: Path, canvas: int = 40) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(SEED + 1)
    n = len(digits.target)
    is_test = _split(n, rng)
    test_ids = []
    for i in range(n):
        glyph = np.kron(digits.images[i] / 16.0, np.ones((3, 3)))  # 24 x 24
        image = rng.normal(0.1, 0.05, (canvas, canvas))
        dy, dx = rng.integers(0, canvas - glyph.shape[0], 2)
        image[dy:dy + glyph.shape[0], dx:dx + glyph.shape[1]] += glyph * rng.uniform(0.6, 1.0)
        pixels = np.clip(image, 0, 1) * 255
        name = f"{i:05d}.png"
        if is_test[i]:
            (dest / "test").mkdir(parents=True, exist_ok=True)
            write_png(dest / "test" / name, pixels)
            test_ids.append((name, str(digits.target[i])))
        else:
            folder = dest / "train" / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / name, pixels)
    answers = pd.DataFrame(test_ids, columns=["id", "label"])
    _write_csv(answers.assign(label="0"), dest / "sample_submission.csv")
    _write_csv(answers, dest / ANSWERS_FILE)
    (dest / "description.md").write_text(_description(
        "Digits, moved", "Handwritten digits (scikit-learn's digits, upscaled) at a random place of a noisy canvas. "
        "`train/<digit>/` holds the training images of each digit; predict the digit of every image in `test/`; "
        "the submission's `id` is the file name.", _ACCURACY))


# --- audio -----------------------------------------------------------------------------------------

TONES = ("steady", "rising", "falling", "tremolo", "beeps")


def _tone(kind: str, rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    f0 = rng.uniform(300, 1500)
    if kind == "rising":
        freq = f0 * np.exp(np.log(rng.uniform(1.5, 2.5)) * t / seconds)
    elif kind == "falling":
        freq = f0 * 2 * np.exp(-np.log(rng.uniform(1.5, 2.5)) * t / seconds)
    else:
        freq = np.full_like(t, f0 * 1.4)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    wave_ = np.sin(phase) + rng.uniform(0, 0.5) * np.sin(2 * phase)  # a random second harmonic
    envelope = np.ones_like(t)
    if kind == "tremolo":
        envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(6, 12) * t)
    elif kind == "beeps":
        count = rng.integers(2, 5)
        envelope = np.zeros_like(t)
        for start in np.sort(rng.uniform(0, seconds - 0.08, count)):
            envelope[(t >= start) & (t < start + 0.06)] = 1.0
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    signal = wave_ * envelope * fade * rng.uniform(0.2, 0.6)
    return signal + rng.normal(0, rng.uniform(0.005, 0.05), len(t))


def _build_tones(dest: Path, n: int = 500, rate: int = 8000, seconds: float = 0.5) -> None:
    rng = np.random.default_rng(SEED + 2)
    labels = [TONES[i] for i in rng.integers(0, len(TONES), n)]
    is_test = _split(n, rng)
    ids = [f"clip_{i:04d}" for i in range(n)]
    for folder in ("train", "test"):
        (dest / folder).mkdir(parents=True)
    for i, label in enumerate(labels):
        write_wav(dest / ("test" if is_test[i] else "train") / f"{ids[i]}.wav", _tone(label, rate, seconds, rng), rate)
    _tables(dest, labels, is_test, ids)
    (dest / "description.md").write_text(_description(
        "Tones", "Half-second clips of one of five sounds: a steady tone, a rising or a falling sweep, a tone "
        "with tremolo, or a few short beeps, at a random pitch and loudness with background noise. `train.csv` "
        "labels the clips in `train/`; predict the label of every clip in `test/`.", _ACCURACY))


def _build_pulses(dest: Path, n: int = 600, seconds: float = 1.0) -> None:
    rng = np.random.default_rng(SEED + 3)
    counts = rng.integers(1, 5, n)
    is_test = _split(n, rng)
    (dest / "clips").mkdir(parents=True)
    files = []
    for i, count in enumerate(counts):
        rate = 8000 if i % 3 else 11025
        t = np.arange(int(rate * seconds)) / rate
        clip = rng.normal(0, rng.uniform(0.01, 0.04), len(t))
        starts = np.sort(rng.choice(np.arange(0.05, seconds - 0.1, 0.12), count, replace=False))
        pitch = rng.uniform(500, 3000)
        for start in starts:
            near = (t >= start) & (t < start + 0.03)
            clip[near] += np.sin(2 * np.pi * pitch * (t[near] - start)) * np.exp(-(t[near] - start) / 0.01) * 0.7
        name = f"clips/{i:05d}.wav"
        write_wav(dest / name, clip, rate)
        files.append(name)
    frame = pd.DataFrame({"file": files, "pulses": [str(c) for c in counts]})
    _write_csv(frame[~is_test].reset_index(drop=True), dest / "train.csv")
    test = frame[is_test].reset_index(drop=True)
    _write_csv(test[["file"]], dest / "test.csv")
    _write_csv(test.assign(pulses="1"), dest / "sample_submission.csv")
    _write_csv(test, dest / ANSWERS_FILE)
    (dest / "description.md").write_text(_description(
        "Pulses", "Each one-second clip (8 or 11.025 kHz) holds one to four short clicks in noise; `file` names "
        "it inside `clips/`, where training and test clips lie together. Predict `pulses`, the number of clicks.",
        _ACCURACY))


COMPETITIONS = {c.name: c for c in (
    MediaCompetition("shapes", "example", "image", _build_shapes),
    MediaCompetition("tones", "example", "audio", _build_tones),
    MediaCompetition("digits-moved", "suite", "image", _build_digits_moved),
    MediaCompetition("pulses", "suite", "audio", _build_pulses),
)}


def list_media(group: str | None = None) -> list[str]:
    return [name for name, c in COMPETITIONS.items() if group is None or c.group == group]


def build_media(name: str, dest: Path, **size: int) -> Path:
    """Build media competition ``name`` into ``dest`` (its own files replaced) and return it;
    ``size`` (e.g. ``n=200``) makes a smaller one for tests."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for stale in _MANAGED:
        (dest / stale).unlink(missing_ok=True)
    for folder in _FOLDERS:
        shutil.rmtree(dest / folder, ignore_errors=True)
    COMPETITIONS[name].build(dest, **size)
    write_checksums(dest)
    return dest
