"""Sizing models to the time a script may run.

A script must finish well inside ``script_timeout_s`` on the development subsample, and the final
script trains about twice (fold-0 check, then a refit on every row), or once per fold plus the refit
on a small table scored out of fold. The estimate is deliberately rough and conservative: seconds
per boosting round grow with rows x features / threads.
"""

from __future__ import annotations

from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import TaskFacts
from mlestar.brain.expert.neural import TRAIN_SHARE, epoch_cost_s

MIN_ROUNDS = 60
MAX_ROUNDS = 5000
FOREST_MAX_TREES = 800
FOREST_MIN_TREES = 50
MIN_EPOCHS, MAX_EPOCHS = 3, 60
# Boosting on media features costs this many times a table's round: every column is dense and
# informative (histograms fill completely), and decoding and representing the files comes on top.
MEDIA_ROUND_FACTOR = 4.0


def _round_cost_s(card_name: str, facts: TaskFacts) -> float:
    card = CARDS[card_name]
    if card.family == "neural":
        return epoch_cost_s(facts, int(card.params.get("width", 16)))
    cells = facts.n_rows * max(1, facts.n_features) / 1e6
    outputs = facts.n_classes if facts.task_type == "multiclass" else 1
    trees = max(1, outputs) * facts.n_heads
    cat_cells = facts.n_rows * len(facts.cat_cols) / 1e6
    per_round = (card.cost_per_mcell * cells + card.cat_cost_per_mcell * cat_cells) * trees / max(1, facts.threads)
    if facts.media is not None:
        per_round *= MEDIA_ROUND_FACTOR
    # Every round (tree) also pays a fixed overhead that no amount of threads removes.
    overhead = (5e-3 if card.family == "forest" else 1e-3) * trees
    return max(per_round, overhead)


def round_budget(card_name: str, facts: TaskFacts, share: float = 1.0, cap: int | None = None) -> int:
    """How many rounds (trees) the card may grow within its share of the script's time."""
    card = CARDS[card_name]
    seconds = facts.timeout_s * TRAIN_SHARE * share / len(facts.score_folds)
    rounds = int(seconds / _round_cost_s(card_name, facts))
    if card.family == "forest":
        rounds = max(FOREST_MIN_TREES, min(FOREST_MAX_TREES, rounds))
    elif card.family == "neural":
        rounds = max(MIN_EPOCHS, min(MAX_EPOCHS, rounds))
    else:
        rounds = max(MIN_ROUNDS, min(MAX_ROUNDS, rounds))
    return min(rounds, cap) if cap else rounds


# A text model's fit costs about this many seconds per training document (vectorising word and
# character n-grams dominates); choosing its regularisation on 3 inner folds about triples it.
TEXT_FIT_S_PER_ROW = 1e-3
TEXT_TUNING_FACTOR = 3.0


def text_fit_s(facts: TaskFacts, tune: bool) -> float:
    """Rough seconds of one fit of a text model on the development rows."""
    return facts.n_rows * TEXT_FIT_S_PER_ROW * (TEXT_TUNING_FACTOR if tune else 1.0)


def text_tuning_affordable(facts: TaskFacts) -> bool:
    """Whether a text model may search its regularisation within half the script's time."""
    return len(facts.score_folds) * text_fit_s(facts, tune=True) <= 0.5 * facts.timeout_s


def learning_rate_for(rounds: int, default: float) -> float:
    """A learning rate that lets boosting converge within ``rounds``: small budgets learn faster."""
    if rounds >= 2500:
        return min(default, 0.04)
    if rounds >= 1000:
        return default
    if rounds >= 400:
        return max(default, 0.08)
    return max(default, 0.15)


def estimated_script_s(model_cards: list[str], facts: TaskFacts, rounds: list[int]) -> float:
    """Rough seconds a development run of a solution takes (used to split time in combined scripts)."""
    total = 5.0
    fits = len(facts.score_folds)
    for card_name, n in zip(model_cards, rounds, strict=False):
        card = CARDS.get(card_name)
        if card is None:
            continue
        if card.uses_rounds:
            # early stopping usually ends boosting well before the cap
            total += fits * _round_cost_s(card_name, facts) * n * (0.5 if card.family != "forest" else 1.0)
        elif card.family == "text_linear":
            total += fits * text_fit_s(facts, tune=text_tuning_affordable(facts))
        else:
            total += fits * (2e-6 * facts.n_rows * max(1, facts.n_features) + 2.0)
    return total
