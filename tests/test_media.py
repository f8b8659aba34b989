"""Media competitions: intake of each layout, what scripts may see, the offline scope check, the
expert's media blocks, and GPU leases (with a fake device list)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from media_builders import build_media, list_media, write_png, write_wav

from mlestar.brain.expert import ExpertBrain
from mlestar.brain.expert.ablation import write as write_ablation
from mlestar.brain.expert.moves import applicable
from mlestar.brain.expert.solution import spec_of
from mlestar.brain.protocol import BrainContext, ModelCard, ScoredScript
from mlestar.core.contract import find_blocks
from mlestar.core.task import Modality
from mlestar.errors import UnsupportedTask
from mlestar.exec.gpus import CUDA_VISIBLE, GpuPool, resolve_gpus
from mlestar.exec.models import ExecLimits, ScriptJob
from mlestar.exec.pool import LocalExecutor
from mlestar.exec.workspace import prepare_script_dir
from mlestar.pipeline.run import create_run
from mlestar.pipeline.split import make_folds
from mlestar.settings import Settings
from mlestar.task import load_task
from mlestar.task.media import SAMPLE_FILES
from mlestar.task.views import input_view, private_paths

REPO = Path(__file__).resolve().parents[1]


def _image(rng: np.random.Generator, grey: bool = False) -> np.ndarray:
    return rng.integers(0, 255, (12, 16) if grey else (12, 16, 3))


def _tables(root: Path, train_keys: list[str], test_keys: list[str], key: str = "id") -> None:
    labels = ["cat", "dog"] * (len(train_keys) // 2)
    pd.DataFrame({key: train_keys, "label": labels}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({key: test_keys}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({key: test_keys, "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)


def image_competition(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("train", "test"):
        (root / folder).mkdir(parents=True)
    for i in range(n):
        write_png(root / "train" / f"a{i}.png", _image(rng))
        write_png(root / "test" / f"b{i}.png", _image(rng, grey=True))
    _tables(root, [f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)])
    return root


def test_images_named_by_id_profile_sizes_modes_and_classes(tmp_path: Path) -> None:
    task = load_task(image_competition(tmp_path))
    media = task.media
    assert task.modality is Modality.IMAGE and media is not None
    assert (media.kind, media.layout, media.key_column) == ("image", "table", "id")
    assert (media.train_pattern, media.test_pattern, media.test_dirs) == ("train/{id}.png", "test/{id}.png", ["test"])
    assert media.width is not None and media.width.median == 16 and media.height.median == 12
    assert media.modes == {"RGB": 12} and media.class_counts == {"cat": 6, "dog": 6}
    assert "train/{id}.png" in task.summary() and "width 16px" in task.summary()


def test_test_media_are_hidden_from_development_scripts(tmp_path: Path) -> None:
    task = load_task(image_competition(tmp_path))
    dev = {inner.as_posix() for _, inner in input_view(task, final=False).links}
    final = {inner.as_posix() for _, inner in input_view(task, final=True).links}
    assert "train" in dev and "test" not in dev
    assert {"train", "test"} <= final
    assert task.data_path("test") in private_paths(task, final=False)
    assert task.data_path("test") not in private_paths(task, final=True)


def test_class_folders_become_rows_in_path_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(6):
            write_png(tmp_path / "train" / label / f"{label}{i}.png", _image(rng))
    (tmp_path / "test").mkdir()
    for i in range(4):
        write_png(tmp_path / "test" / f"t{i}.png", _image(rng))
    pd.DataFrame({"id": [f"t{i}.png" for i in range(4)], "label": "cat"}).to_csv(
        tmp_path / "sample_submission.csv", index=False)
    task = load_task(tmp_path)
    assert task.media is not None and task.media.layout == "class_folders"
    assert task.n_train_rows == 12 and task.classes == ["cat", "dog"]
    assert (task.media.test_pattern, task.media.key_column) == ("test/{id}", "id")
    folds = make_folds(task, seed=0, n_folds=2, dev_max_rows=100)
    assert len(folds) == 12


def test_audio_in_a_folder_shared_by_train_and_test_is_linked_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    for i in range(12):
        rate = 8000 if i % 2 else 11025
        write_wav(tmp_path / "clips" / f"{i}.wav", np.sin(np.arange(rate // 2) * 0.1) * 0.3, rate)
    _tables(tmp_path, [f"clips/{i}.wav" for i in range(8)], [f"clips/{i}.wav" for i in range(8, 12)], key="file")
    task = load_task(tmp_path)
    media = task.media
    assert task.modality is Modality.AUDIO and media is not None
    assert (media.key_column, media.train_pattern, media.shared_dirs) == ("file", "{id}", ["clips"])
    assert media.sample_rates == {"8000": 4, "11025": 4} and media.duration_s is not None
    assert media.duration_s.median == pytest.approx(0.5)
    dev = {inner.as_posix() for _, inner in input_view(task, final=False).links}
    assert {f"clips/{i}.wav" for i in range(8)} <= dev and not any(f"clips/{i}.wav" in dev for i in range(8, 12))
    assert "clips" in {inner.as_posix() for _, inner in input_view(task, final=True).links}


@pytest.mark.parametrize("kind", ["text", "npy", "json"])
def test_per_sample_text_and_arrays_are_profiled_and_refused_offline(tmp_path: Path, kind: str) -> None:
    (tmp_path / "items").mkdir()
    for i in range(12):
        if kind == "text":
            (tmp_path / "items" / f"{i}.txt").write_text("some words " * (i + 1))
        elif kind == "npy":
            np.save(tmp_path / "items" / f"{i}.npy", np.zeros((5, 3), dtype=np.float32))
        else:
            (tmp_path / "items" / f"{i}.json").write_text("[[1, 2], [3, 4], [5, 6]]")
    _tables(tmp_path, [str(i) for i in range(8)], [str(i) for i in range(8, 12)])
    task = load_task(tmp_path)
    media = task.media
    assert media is not None and media.kind == ("text" if kind == "text" else "array")
    if kind == "text":
        assert media.chars is not None and media.chars.max == len("some words " * 8)
    else:
        assert media.shapes == ({"(5, 3) float32": 8} if kind == "npy" else {"(3, 2)": 8})
        assert media.train_pattern == f"items/{{id}}.{kind}"
    kind = media.kind
    runs = tmp_path / "runs"
    with pytest.raises(UnsupportedTask, match=rf"per-row {kind} files.*--llm"):
        create_run(tmp_path, Settings.load(runs_dir=runs))
    assert not runs.exists() or not any(runs.iterdir())


def test_a_free_text_target_fails_up_front_with_a_pointer_to_an_llm(tmp_path: Path) -> None:
    words = [f"word{i} number {i * 7}" for i in range(600)]
    before = pd.DataFrame({"id": range(600), "before": [str(i * 7) for i in range(600)], "after": words})
    before.iloc[:500].to_csv(tmp_path / "train.csv", index=False)
    before.iloc[500:][["id", "before"]].to_csv(tmp_path / "test.csv", index=False)
    before.iloc[500:][["id"]].assign(after="x").to_csv(tmp_path / "sample_submission.csv", index=False)
    with pytest.raises(UnsupportedTask, match=r"target 'after' is free text.*sequence-to-sequence.*--llm"):
        create_run(tmp_path, Settings.load(runs_dir=tmp_path / "runs"))


def test_profiling_reads_only_a_sample_of_the_files(tmp_path: Path) -> None:
    image_competition(tmp_path, n=SAMPLE_FILES + 100)
    media = load_task(tmp_path).media
    assert media is not None and media.sampled == SAMPLE_FILES and media.n_train_files == SAMPLE_FILES + 100


@pytest.mark.slow  # a few seconds of PNG and wav writing
def test_media_examples_rebuild_to_the_committed_bytes(tmp_path: Path) -> None:
    from builders import read_checksums

    for name in list_media("example"):
        assert read_checksums(build_media(name, tmp_path / name)) == read_checksums(REPO / "examples" / name)


# --- the expert's media scripts --------------------------------------------------------------------

def _context(tmp_path: Path, name: str) -> BrainContext:
    folder = build_media(name, tmp_path / name, n=60)
    store = create_run(folder, Settings.load(runs_dir=tmp_path / "runs", script_timeout_s=60))
    return BrainContext.model_validate(store.get_meta("context"))


@pytest.mark.parametrize(("name", "groups"), [("shapes", "gradients"), ("tones", "mfcc")])
def test_media_scripts_have_media_blocks_moves_and_ablations(tmp_path: Path, name: str, groups: str) -> None:
    ctx = _context(tmp_path, name)
    brain = ExpertBrain()
    script = brain.write_candidate(ctx, ModelCard(name="lightgbm"))
    assert list(find_blocks(script.code)) == ["setup", "media_loading", "representation", "model", "validation"]
    spec = spec_of(script)
    assert spec is not None and spec.media is not None and groups in spec.media.features
    assert applicable(spec, "representation") and applicable(spec, "media_loading")
    ablation = write_ablation(ScoredScript(script=script, score=0.5), [])
    measured = ablation.info["expert"]["components"]
    assert f"{groups}_features" in measured and measured[f"{groups}_features"]["block"] == "representation"


def test_image_scripts_can_change_resolution(tmp_path: Path) -> None:
    spec = spec_of(ExpertBrain().write_candidate(_context(tmp_path, "shapes"), ModelCard(name="lightgbm")))
    assert spec is not None
    ids = {m.id for m in applicable(spec, "media_loading")}
    assert "higher_resolution" in ids or "lower_resolution" in ids


# --- GPUs ------------------------------------------------------------------------------------------

def test_gpu_setting_resolves_to_device_ids() -> None:
    assert resolve_gpus("none", detected=["0"]) == []
    assert resolve_gpus("auto", detected=["0", "1"]) == ["0", "1"]
    assert resolve_gpus("1,3") == ["1", "3"]


def test_running_scripts_never_share_a_gpu(tmp_path: Path) -> None:
    code = (
        "import os, time\nstart = time.time()\ntime.sleep(0.4)\n"
        f"print('GPU', os.environ['{CUDA_VISIBLE}'], start, time.time())\n"
        "print('Final Validation Performance: 1.0')\n"
    )
    jobs = []
    for i in range(5):
        folder = tmp_path / f"s{i}"
        (tmp_path / "input").mkdir(exist_ok=True)
        prepare_script_dir(folder, code, tmp_path / "input")
        jobs.append(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=30)))
    with LocalExecutor(workers=4, gpus=["0", "1"]) as pool:
        results = [f.result() for f in [pool.submit(job) for job in jobs]]
    spans: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        _, device, start, end = next(line for line in result.stdout.splitlines() if line.startswith("GPU")).split()
        assert result.gpu == device
        spans.setdefault(device, []).append((float(start), float(end)))
    assert set(spans) == {"0", "1"}
    for intervals in spans.values():
        intervals.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(intervals, intervals[1:], strict=False))


def test_gpu_pool_shares_a_device_only_when_configured() -> None:
    pool = GpuPool(["0"], per_device=2)
    assert pool.acquire() == "0" and pool.acquire() == "0"
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.time()
    assert pool.acquire(cancel) is None and time.time() - started >= 0.25
    pool.release("0")
    assert pool.acquire() == "0"


FAKE_NVIDIA_SMI = """
# A stand-in for nvidia-smi: two GPUs; a script that wrote its pid (as it sees it, maybe inside a PID
# namespace) to working/pid holds 512 MiB, reported under its host pid as nvidia-smi does.
import os, sys

if sys.argv[1:] == ["-L"]:
    print("GPU 0: Fake GPU (UUID: GPU-0)")
    print("GPU 1: Fake GPU (UUID: GPU-1)")
    sys.exit(0)
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        folder = os.readlink(f"/proc/{pid}/cwd")
        marker = os.path.join(folder, "working", "pid")
        if not os.path.isfile(marker):
            continue
        status = open(f"/proc/{pid}/status").read()
        inner = next(line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        continue
    if inner == open(marker).read().strip():
        print(f"{pid}, 512")
        open(os.path.join(folder, "working", "seen"), "w").close()
"""


def test_gpus_are_detected_and_memory_is_recorded_per_script(tmp_path: Path, monkeypatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(f"#!{sys.executable}\n" + FAKE_NVIDIA_SMI)
    (tools / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{__import__('os').environ['PATH']}")
    assert resolve_gpus("auto") == ["0", "1"]
    # the script runs until nvidia-smi has reported it once (or 20 s pass)
    code = ("import os, time\nopen('working/pid', 'w').write(str(os.getpid()))\nstart = time.time()\n"
            "while not os.path.exists('working/seen') and time.time() - start < 20:\n    time.sleep(0.1)\n"
            "time.sleep(1.0)\nprint('Final Validation Performance: 1.0')\n")
    (tmp_path / "input").mkdir()
    folder = prepare_script_dir(tmp_path / "scripts" / "one", code, tmp_path / "input")
    with LocalExecutor(workers=1, gpus=resolve_gpus("auto")) as pool:
        result = pool.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=30))).result()
    assert result.score == 1.0 and result.gpu == "0" and result.peak_gpu_memory_mb == 512


def test_the_expert_debugger_shrinks_a_network_that_runs_out_of_gpu_memory(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "shapes")
    ctx = ctx.model_copy(update={"available_packages": [*ctx.available_packages, "torch"]})  # not run here
    brain = ExpertBrain()
    script = brain.write_candidate(ctx, ModelCard(name="cnn"))
    error = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    fixed = brain.debug(ctx, script, error)
    assert fixed is not None
    before, after = spec_of(script), spec_of(fixed)
    assert before is not None and after is not None
    assert after.models[0].params["batch_size"] == before.models[0].params["batch_size"] // 2
    assert after.history[-1] == "debug: cuda_memory"


def test_test_rows_without_files_fail_up_front(tmp_path: Path) -> None:
    image_competition(tmp_path)
    pd.DataFrame({"id": ["zz1", "zz2"]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": ["zz1", "zz2"], "label": "cat"}).to_csv(tmp_path / "sample_submission.csv", index=False)
    with pytest.raises(UnsupportedTask, match=r"none of the image files matches the test table.*--llm"):
        create_run(tmp_path, Settings.load(runs_dir=tmp_path / "runs"))
