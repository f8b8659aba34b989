"""Against a real checkout of openai/mle-bench, when ``MLESTAR_MLEBENCH_CHECKOUT`` names one (CI has none,
so these are skipped there): every competition's grader loads through mlestar's loader, the named
splits resolve, and every leaderboard is either readable or recognised as a Git LFS pointer.

    git clone https://github.com/openai/mle-bench ~/src/mle-bench   # git-lfs optional
    pip install -e '.[mlebench]'
    MLESTAR_MLEBENCH_CHECKOUT=~/src/mle-bench pytest tests/test_mlebench_checkout.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlestar.errors import MlestarError
from mlestar.grading.leaderboard import is_lfs_pointer, read_leaderboard
from mlestar.grading.mlebench import Checkout

CHECKOUT = os.environ.get("MLESTAR_MLEBENCH_CHECKOUT", "")
pytestmark = pytest.mark.skipif(not CHECKOUT, reason="MLESTAR_MLEBENCH_CHECKOUT names no MLE-bench checkout")


@pytest.fixture(scope="module")
def checkout() -> Checkout:
    return Checkout(Path(CHECKOUT).expanduser())


def test_every_grader_of_the_checkout_loads(checkout: Checkout) -> None:
    ids = checkout.competition_ids()
    failures = {}
    for competition_id in ids:
        try:
            checkout.grader(competition_id)
        except MlestarError as exc:
            failures[competition_id] = str(exc)
    assert not failures, f"{len(failures)} of {len(ids)} graders failed:\n" + "\n".join(
        f"{name}: {why}" for name, why in failures.items()
    )
    assert len(ids) >= 75  # the benchmark's 75 competitions, plus development ones


def test_named_splits_resolve(checkout: Checkout) -> None:
    lite = checkout.split("lite")
    assert len(lite) == 22 and "spooky-author-identification" in lite and "dog-breed-identification" in lite
    assert len(checkout.split("all")) == 75
    assert set(lite) <= set(checkout.split("all"))


def test_every_leaderboard_is_readable_or_a_pointer(checkout: Checkout) -> None:
    unreadable = {}
    for competition_id in checkout.competition_ids():
        board = checkout.leaderboard(competition_id)
        if not board.is_file() or is_lfs_pointer(board):
            continue
        try:
            assert len(read_leaderboard(board)) > 0
        except MlestarError as exc:
            unreadable[competition_id] = str(exc)
    assert not unreadable, unreadable
