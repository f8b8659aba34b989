"""How long the expert's small CNN takes: per epoch on the development rows, per training run.

Its own module (below the card registry and the sizing of every card) because both need it: the
cards to decide whether the network gets enough epochs to be worth a candidate, the sizing to
choose its epochs.
"""

from __future__ import annotations

from mlestar.brain.expert.facts import TaskFacts

# Share of the timeout the models of one script may spend training (the rest: loading, features,
# the final refit's extra rows, safety margin).
TRAIN_SHARE = 0.3
# Multiply-adds per second one CPU thread manages on small convolutions (forward and backward);
# a GPU is counted as this many threads.
NEURAL_MACS_PER_S = 1.5e10
GPU_THREADS = 50
DEFAULT_RESOLUTION = 32
USEFUL_EPOCHS = 8  # fewer than this and a network trained from scratch has not learned much


def network_inputs(facts: TaskFacts) -> tuple[int, int]:
    """(input channels, input cells per channel) of the network: the image, or the spectrogram."""
    media = facts.media
    if media is None or media.kind == "image":
        return (media.channels if media else 3), DEFAULT_RESOLUTION**2
    frames = int(media.duration_s * media.sample_rate / 256) + 1
    return 1, 40 * frames


def epoch_cost_s(facts: TaskFacts, width: int = 16) -> float:
    """Seconds one epoch of the small CNN takes on the development rows (three conv stages)."""
    channels, cells = network_inputs(facts)
    macs = 9 * cells * (channels * width + 4 * width * width) * 3  # forward and backward
    threads = GPU_THREADS if facts.gpu else max(1, facts.threads)
    return facts.n_rows * 0.8 * macs / (NEURAL_MACS_PER_S * threads) + 0.2


def fit_seconds(facts: TaskFacts, share: float = 1.0) -> float:
    """Seconds one training run of a model may take within its share of the script's time."""
    return round(facts.timeout_s * TRAIN_SHARE * share / len(facts.score_folds), 1)


def affordable_epochs(facts: TaskFacts, width: int = 16) -> float:
    """Epochs of the default network one training run can afford."""
    return fit_seconds(facts) / epoch_cost_s(facts, width)
