"""The catalogue of refinement moves, block by block.

A move takes a solution spec and returns a changed copy (or None where it does not apply). Moves
are ordered by how often they pay off in practice, so the planner tries the likely winners first.
Each move names its ``opposite`` (for when it hurt) and whether it may be ``repeated`` in the same
direction (for when it helped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlestar.brain.expert.blocks import find_join, is_join_block
from mlestar.brain.expert.cards import CARDS, Step, rank_cards
from mlestar.brain.expert.sizing import MAX_ROUNDS, estimated_script_s, round_budget
from mlestar.brain.expert.solution import learning_rate_key, model_spec, unique_key
from mlestar.brain.expert.spec import JoinSpec, ModelSpec, SolutionSpec

Apply = Callable[[SolutionSpec], SolutionSpec | None]


@dataclass(frozen=True)
class Move:
    id: str
    block: str
    text: str
    apply: Apply
    opposite: str | None = None
    repeat: bool = False


# --- helpers ---------------------------------------------------------------------------------------

def _edit_primary(spec: SolutionSpec, change: Callable[[ModelSpec], bool]) -> SolutionSpec | None:
    """Copy of ``spec`` with ``change`` applied to its first model; None when nothing changed."""
    new = spec.copy_deep()
    if not change(new.models[0]):
        return None
    return new


def _scale_param(m: ModelSpec, knob: Step | None, up: bool) -> bool:
    if knob is None:
        return False
    current = m.params.get(knob.param)
    if current is None:
        return False
    if knob.additive:
        value = current + knob.step if up else current - knob.step
    else:
        value = current * knob.step if up else current / knob.step
    value = max(knob.low, min(knob.high, value))
    if isinstance(current, int):
        value = round(value)
    if value == current:
        return False
    m.params[knob.param] = value
    return True


def _time_share(spec: SolutionSpec) -> float:
    return spec.budget_scale / max(1, len(spec.models))


def _affordable(spec: SolutionSpec, factor: float) -> bool:
    """Whether making the solution ``factor`` times slower still fits the script's timeout."""
    facts = spec.facts
    current = estimated_script_s([m.card for m in spec.models], facts, [m.max_rounds for m in spec.models])
    return current * factor < 0.5 * facts.timeout_s


# --- model block -----------------------------------------------------------------------------------

def _lower_lr(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        key = learning_rate_key(m)
        if key is None or not CARDS[m.card].uses_rounds or m.params[key] <= 0.011:
            return False
        rounds = min(MAX_ROUNDS, m.max_rounds * 2, round_budget(m.card, spec.facts, _time_share(spec)) * 2)
        if rounds <= m.max_rounds and m.params[key] < 0.03:
            return False
        m.params[key] = round(m.params[key] / 2, 4)
        m.max_rounds = max(m.max_rounds, rounds)
        m.early_stopping = min(400, int(m.early_stopping * 1.5))
        return True

    return _edit_primary(spec, change) if _affordable(spec, 2.0) else None


def _raise_lr(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        key = learning_rate_key(m)
        if key is None or m.params[key] >= 0.3:
            return False
        m.params[key] = round(min(0.3, m.params[key] * 2), 4)
        return True

    return _edit_primary(spec, change)


def _capacity(up: bool) -> Apply:
    return lambda spec: _edit_primary(spec, lambda m: _scale_param(m, CARDS[m.card].knobs.capacity, up))


def _min_leaf(up: bool) -> Apply:
    return lambda spec: _edit_primary(spec, lambda m: _scale_param(m, CARDS[m.card].knobs.min_leaf, up))


def _regularize(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        key = CARDS[m.card].knobs.l2
        if key is None:
            return False
        current = float(m.params.get(key, 0.0))
        m.params[key] = round(max(current * (3.0 if m.card == "catboost" else 10.0), 1.0), 4)
        if m.card in ("lightgbm", "tfidf_lightgbm"):
            m.params["lambda_l1"] = max(float(m.params.get("lambda_l1", 0.0)), 0.5)
        return True

    return _edit_primary(spec, change)


def _fewer_columns(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        key = CARDS[m.card].knobs.colsample
        if key is not None:
            if m.params.get(key, 1.0) <= 0.4:
                return False
            m.params[key] = round(max(0.3, m.params.get(key, 1.0) - 0.3), 2)
            return True
        if m.card == "catboost" and m.params.get("rsm", 1.0) > 0.5:
            m.params["rsm"] = 0.5
            return True
        if m.card in ("random_forest", "extra_trees") and m.params.get("max_features") != 0.33:
            m.params["max_features"] = 0.33
            return True
        return False

    return _edit_primary(spec, change)


def _fewer_rows(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        key = CARDS[m.card].knobs.rowsample
        if key is None or m.params.get(key, 1.0) <= 0.55:
            return False
        m.params[key] = 0.6
        return True

    return _edit_primary(spec, change)


def _patience(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if not CARDS[m.card].uses_rounds or CARDS[m.card].family == "forest" or m.early_stopping >= 300:
            return False
        m.early_stopping = min(300, m.early_stopping * 2)
        return True

    return _edit_primary(spec, change)


def _more_trees(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if CARDS[m.card].family != "forest" or m.max_rounds >= 1500:
            return False
        m.max_rounds = min(1500, m.max_rounds * 2)
        return True

    return _edit_primary(spec, change) if _affordable(spec, 2.0) else None


def _linear_strength(up: bool) -> Apply:
    """Up: weaker regularisation (larger C, smaller alpha); down: stronger."""

    def change(m: ModelSpec) -> bool:
        if CARDS[m.card].family not in ("linear", "text_linear"):
            return False
        if "C" in m.params:
            m.params["C"] = round(m.params["C"] * (4.0 if up else 0.25), 6)
        if "alpha" in m.params:
            m.params["alpha"] = m.params["alpha"] * (0.25 if up else 4.0)
        return True

    return lambda spec: _edit_primary(spec, change)


def _text_ngrams(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if CARDS[m.card].family != "text_linear" or m.params.get("word_ngrams") == [1, 3]:
            return False
        m.params["word_ngrams"] = [1, 3]
        m.params["min_df"] = max(2, int(m.params.get("min_df", 2)))
        return True

    return _edit_primary(spec, change)


def _text_chars(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if "use_char" not in m.params:
            return False
        m.params["use_char"] = not m.params.get("use_char", True)
        return True

    return _edit_primary(spec, change)


def _class_weight(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.facts.classification and spec.facts.task_type != "multilabel":
        return None
    if spec.training.class_weight == "balanced":
        return None
    new = spec.copy_deep()
    new.training.class_weight = "balanced"
    return new


def _seed_bag(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if m.seeds >= 3 or not CARDS[m.card].uses_rounds:
            return False
        m.seeds = 3
        return True

    return _edit_primary(spec, change) if _affordable(spec, 3.0) else None


def _next_card(spec: SolutionSpec) -> str | None:
    present = {m.card for m in spec.models}
    for card in rank_cards(spec.facts, []):
        if card.name not in present:
            return card.name
    return None


def _swap_model(spec: SolutionSpec) -> SolutionSpec | None:
    card = _next_card(spec)
    if card is None:
        return None
    new = spec.copy_deep()
    new.models[0] = model_spec(card, new.facts, key=unique_key(new, card), share=_time_share(new),
                               cap=new.models[0].max_rounds or None)
    return new


def _add_model(spec: SolutionSpec) -> SolutionSpec | None:
    card = _next_card(spec)
    if card is None or len(spec.models) >= 4 or not _affordable(spec, 1.0 + 1.0 / len(spec.models)):
        return None
    new = spec.copy_deep()
    cap = max(m.max_rounds for m in new.models) or None
    new.models.append(model_spec(card, new.facts, key=unique_key(new, card), share=_time_share(new), cap=cap))
    return new


# --- feature engineering ---------------------------------------------------------------------------

def _feature_group(group: str) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        f, fe = spec.facts, spec.features
        if group in fe.groups:
            return None
        usable = {
            "datetime_parts": bool(f.date_cols),
            "text_stats": bool(f.text_cols),
            "missing_count": f.has_missing,
            "ratios": len(fe.ratio_cols) >= 2 or (not fe.ratio_cols and len(f.numeric_cols) >= 2),
            "group_stats": bool(fe.group_pairs),
            "cat_interactions": len(fe.interaction_cats) >= 2,
            "products": len(fe.ratio_cols) >= 2 or (not fe.ratio_cols and len(f.numeric_cols) >= 2),
            "row_stats": len(f.numeric_cols) >= 3,
            "log_skewed": len(f.numeric_cols) >= 1,
            "value_counts": len(f.numeric_cols) >= 1,
            "text_oof": bool(f.ngram_cols),
            "text_svd": bool(f.ngram_cols),
        }
        if not usable.get(group, False):
            return None
        new = spec.copy_deep()
        new.features.groups.append(group)
        return new

    return apply


FEATURE_GROUP_TEXT = {
    "datetime_parts": "add calendar parts (year, month, day of week, hour ...) of the date columns",
    "text_stats": "add text shape features (characters, words, upper-case share, digits, punctuation)",
    "missing_count": "add the number of missing values per row",
    "ratios": "add pairwise ratios of the strongest numeric columns",
    "group_stats": "add each number's category mean and its distance to it (fold-safe group statistics)",
    "cat_interactions": "add pairwise combinations of the main categorical columns",
    "products": "add pairwise products and differences of the strongest numeric columns",
    "row_stats": "add row-wise mean / std / min / max of the numeric columns",
    "log_skewed": "add log1p copies of long-tailed non-negative numbers",
    "value_counts": "add how often each numeric value occurs (frequency of values)",
    "text_oof": "stack a TF-IDF linear model's out-of-fold predictions from the text as features",
    "text_svd": "add the leading SVD components of the word and character n-grams as features",
}


def _text_setting(group: str, name: str, factor: float, low: float, high: float) -> Apply:
    """Scale one setting of a text feature group (only where the group is on)."""

    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if group not in spec.features.groups:
            return None
        current = getattr(spec.features, name)
        value = max(low, min(high, current * factor))
        value = round(value) if isinstance(current, int) else round(value, 6)
        if value == current:
            return None
        new = spec.copy_deep()
        setattr(new.features, name, value)
        return new

    return apply


def _drop_last_group(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.features.groups:
        return None
    new = spec.copy_deep()
    new.features.groups.pop()
    return new


# --- categorical encoding --------------------------------------------------------------------------

def _encoding(method: str) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if not spec.facts.cat_cols or spec.encoding.method == method:
            return None
        new = spec.copy_deep()
        new.encoding.method = method  # type: ignore[assignment]
        return new

    return apply


def _extra_encoding(kind: str) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if not spec.facts.cat_cols or kind in spec.encoding.extras:
            return None
        new = spec.copy_deep()
        new.encoding.extras.append(kind)
        return new

    return apply


def _drop_last_extra(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.encoding.extras:
        return None
    new = spec.copy_deep()
    new.encoding.extras.pop()
    return new


def _rare(threshold: int) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if not spec.facts.cat_cols or spec.encoding.rare_min_count == threshold:
            return None
        new = spec.copy_deep()
        new.encoding.rare_min_count = threshold
        return new

    return apply


# --- validation / training procedure ---------------------------------------------------------------

def _fold_bagging(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.training.bagging == "folds" or not _affordable(spec, 4.0):
        return None
    new = spec.copy_deep()
    new.training.bagging = "folds"
    return new


def _target_log(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.facts.task_type != "regression":
        return None
    new = spec.copy_deep()
    new.training.target_transform = "none" if spec.training.target_transform == "log1p" else "log1p"
    return new


def _refit_scale(value: float) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if spec.training.refit_scale == value:
            return None
        new = spec.copy_deep()
        new.training.refit_scale = value
        return new

    return apply


def _blend_mean(spec: SolutionSpec) -> SolutionSpec | None:
    if len(spec.models) < 2:
        return None
    new = spec.copy_deep()
    new.training.blend = "mean" if spec.training.blend == "greedy" else "greedy"
    return new


# --- cleaning --------------------------------------------------------------------------------------

def _lowercase(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.facts.cat_cols:
        return None
    new = spec.copy_deep()
    new.cleaning.lowercase = not spec.cleaning.lowercase
    return new


def _no_normalize(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.facts.cat_cols:
        return None
    new = spec.copy_deep()
    new.cleaning.normalize_strings = not spec.cleaning.normalize_strings
    return new


# --- joins of auxiliary tables: how a table's rows become columns ------------------------------

def _join_edit(name: str, change: Callable[[JoinSpec], bool]) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        new = spec.copy_deep()
        join = find_join(new, name)
        if join is None or not change(join):
            return None
        return new
    return apply


# --- media loading and representation --------------------------------------------------------------

IMAGE_GROUPS = {
    "gradients": "add histograms of gradient orientations on a grid (HOG-like shape features)",
    "color_hist": "add per-channel intensity histograms and statistics",
    "pixels": "add the pixels of a small thumbnail",
    "texture": "add local-binary-pattern texture histograms",
    "spatial_color": "add the mean colour of each cell of a 4 x 4 grid",
}
AUDIO_GROUPS = {
    "mfcc": "add MFCC statistics (timbre)",
    "deltas": "add statistics of the MFCC changes between frames",
    "temporal": "add the loudness in time segments, zero crossings and onset counts",
    "spectral": "add spectral centroid, spread, roll-off and flatness",
    "logmel_stats": "add per-band statistics of the log-mel spectrogram",
}
MAX_RESOLUTION, MIN_RESOLUTION = 96, 16


def _media_edit(change: Callable[[SolutionSpec], bool]) -> Apply:
    def apply(spec: SolutionSpec) -> SolutionSpec | None:
        if spec.media is None:
            return None
        new = spec.copy_deep()
        return new if change(new) else None

    return apply


def _match_flag(join: JoinSpec) -> bool:
    partial = any(link.coverage < 0.999 for link in join.links)
    if join.match_flag or not partial:
        return False  # a flag says something only where some rows find no key
    join.match_flag = True
    return True


def _spread(join: JoinSpec) -> bool:
    if join.relation != "many" or "std" in join.aggregations or not join.numbers + join.dates:
        return False
    join.aggregations = join.aggregations + [a for a in ("std", "sum") if a not in join.aggregations]
    return True


def _recent(join: JoinSpec) -> bool:
    if join.relation != "many" or join.order_by is None or not join.numbers + join.dates:
        return False
    added = [a for a in ("first", "last") if a not in join.aggregations]
    if not added:
        return False
    join.aggregations = join.aggregations + added
    return True


def _lean(join: JoinSpec) -> bool:
    if join.relation != "many" or join.aggregations == ["mean"] or not join.numbers + join.dates:
        return False
    join.aggregations = ["mean"]
    join.category_aggregations = [a for a in join.category_aggregations if a == "nunique"]
    return True


def _no_categories(join: JoinSpec) -> bool:
    if not join.categories:
        return False
    join.categories = []
    return True


def join_moves(name: str) -> list[Move]:
    """The moves of one join block (each changes that table's ``JoinSpec`` only)."""
    return [
        Move("join_spread", name, "add the spread of the table's numbers per key (standard deviation, sum)",
             _join_edit(name, _spread), "join_lean"),
        Move("join_recent", name, "add the earliest and latest values per key (ordered by the table's time)",
             _join_edit(name, _recent), "join_lean"),
        Move("join_lean", name, "aggregate the table's numbers per key by their mean only",
             _join_edit(name, _lean), "join_spread"),
        Move("join_no_categories", name, "leave the table's categorical columns out",
             _join_edit(name, _no_categories)),
        # trees see a missing match as missing values already; a flag helps models that fill them in
        Move("join_match_flag", name, "add a 0/1 column telling whether the row found its key in the table",
             _join_edit(name, _match_flag)),
    ]


def _neural(spec: SolutionSpec) -> bool:
    return any(CARDS[m.card].family == "neural" for m in spec.models)


def _resolution(up: bool) -> Apply:
    def change(spec: SolutionSpec) -> bool:
        media, facts = spec.media, spec.facts.media
        if media is None or facts is None or facts.kind != "image":
            return False
        native = max(facts.width, facts.height, MIN_RESOLUTION)
        value = int(media.resolution * 1.5) if up else int(media.resolution / 1.5)
        value = max(MIN_RESOLUTION, min(MAX_RESOLUTION, native, value))
        if value == media.resolution or (up and not _affordable(spec, (value / media.resolution) ** 2)):
            return False
        media.resolution = value
        return True

    return _media_edit(change)


def _augment(up: bool) -> Apply:
    def change(spec: SolutionSpec) -> bool:
        if spec.media is None or not _neural(spec):
            return False
        value = round(min(1.0, spec.media.augment + 0.25) if up else max(0.0, spec.media.augment - 0.25), 2)
        if value == spec.media.augment:
            return False
        spec.media.augment = value
        return True

    return _media_edit(change)


def _clip(up: bool) -> Apply:
    def change(spec: SolutionSpec) -> bool:
        media, facts = spec.media, spec.facts.media
        if media is None or facts is None or facts.kind != "audio":
            return False
        value = round(min(facts.duration_s * 2, media.clip_s * 1.5) if up else max(0.25, media.clip_s / 1.5), 3)
        if abs(value - media.clip_s) < 1e-3:
            return False
        media.clip_s = value
        return True

    return _media_edit(change)


def _representation_group(group: str) -> Apply:
    def change(spec: SolutionSpec) -> bool:
        media, facts = spec.media, spec.facts.media
        groups = IMAGE_GROUPS if facts is not None and facts.kind == "image" else AUDIO_GROUPS
        if media is None or group not in groups or group in media.features:
            return False
        media.features.append(group)
        return True

    return _media_edit(change)


def _drop_last_representation(spec: SolutionSpec) -> SolutionSpec | None:
    def change(new: SolutionSpec) -> bool:
        if new.media is None or len(new.media.features) < 2:
            return False
        new.media.features.pop()
        return True

    return _media_edit(change)(spec)


def _media_detail(field: str, kind: str, values: tuple[int, ...]) -> Apply:
    """The next value of a representation setting (gradient bins, thumbnail side, mel bands)."""
    def change(spec: SolutionSpec) -> bool:
        media, facts = spec.media, spec.facts.media
        if media is None or facts is None or facts.kind != kind:
            return False
        current = getattr(media, field)
        larger = [v for v in values if v > current]
        if not larger:
            return False
        setattr(media, field, larger[0])
        return True

    return _media_edit(change)


def _more_epochs(spec: SolutionSpec) -> SolutionSpec | None:
    def change(m: ModelSpec) -> bool:
        if CARDS[m.card].family != "neural" or m.max_rounds >= 200:
            return False
        m.max_rounds = min(200, m.max_rounds * 2)
        m.params["fit_seconds"] = round(m.params.get("fit_seconds", 60.0) * 2, 1)
        return True

    return _edit_primary(spec, change) if _affordable(spec, 2.0) else None


# --- the catalogue ---------------------------------------------------------------------------------

CATALOGUE: dict[str, list[Move]] = {
    "model": [
        Move("lower_lr", "model", "halve the learning rate and allow twice the boosting rounds", _lower_lr, repeat=True),
        Move("more_capacity", "model", "grow larger trees (more leaves / depth)", _capacity(True), "less_capacity", True),
        Move("less_capacity", "model", "grow smaller trees (fewer leaves / depth)", _capacity(False), "more_capacity", True),
        Move("min_leaf_up", "model", "require more samples per leaf", _min_leaf(True), "min_leaf_down", True),
        Move("regularize", "model", "stronger L2 (and some L1) regularisation", _regularize, None, True),
        Move("fewer_columns", "model", "sample fewer feature columns per tree", _fewer_columns, None, True),
        Move("fewer_rows", "model", "bag 60% of the rows per tree", _fewer_rows),
        Move("weaker_reg", "model", "weaker regularisation of the linear model (C x4)", _linear_strength(True), "stronger_reg", True),
        Move("stronger_reg", "model", "stronger regularisation of the linear model (C / 4)", _linear_strength(False), "weaker_reg", True),
        Move("trigrams", "model", "word n-grams up to 3", _text_ngrams),
        Move("toggle_chars", "model", "switch the character n-gram features on/off", _text_chars),
        Move("more_trees", "model", "twice as many trees in the forest", _more_trees, None, True),
        Move("add_model", "model", "add the next-best model of the knowledge base to the blend", _add_model, None, True),
        Move("class_weight", "model", "balance the classes with sample weights", _class_weight),
        Move("seed_bagging", "model", "average 3 seeds of the main model", _seed_bag),
        Move("patience", "model", "early-stop more patiently (twice the patience)", _patience),
        Move("swap_model", "model", "replace the main model with the next-best card", _swap_model),
        Move("min_leaf_down", "model", "allow fewer samples per leaf", _min_leaf(False), "min_leaf_up", True),
        Move("raise_lr", "model", "double the learning rate", _raise_lr, "lower_lr"),
        Move("more_epochs", "model", "train the network for twice as many epochs", _more_epochs, None, True),
    ],
    "feature_engineering": [
        Move(f"add_{g}", "feature_engineering", text, _feature_group(g), "drop_last_group")
        for g, text in FEATURE_GROUP_TEXT.items()
    ]
    + [
        Move("text_model_weaker_reg", "feature_engineering", "a less regularised stacked text model (C x4)",
             _text_setting("text_oof", "text_c", 4.0, 0.01, 100.0), "text_model_stronger_reg"),
        Move("text_model_stronger_reg", "feature_engineering", "a more regularised stacked text model (C/4)",
             _text_setting("text_oof", "text_c", 0.25, 0.01, 100.0), "text_model_weaker_reg"),
        Move("more_text_components", "feature_engineering", "twice as many n-gram SVD components",
             _text_setting("text_svd", "text_svd_components", 2.0, 4, 256), "fewer_text_components"),
        Move("fewer_text_components", "feature_engineering", "half as many n-gram SVD components",
             _text_setting("text_svd", "text_svd_components", 0.5, 4, 256), "more_text_components"),
        Move("drop_last_group", "feature_engineering", "remove the most recently added feature group",
             _drop_last_group),
    ],
    "categorical_encoding": [
        Move("target_encoding", "categorical_encoding", "add fold-safe (out-of-fold, smoothed) target encoding",
             _extra_encoding("target"), "drop_last_encoding"),
        Move("count_encoding", "categorical_encoding", "add count encoding of the categorical levels",
             _extra_encoding("count"), "drop_last_encoding"),
        Move("onehot", "categorical_encoding", "one-hot encode narrow categoricals, codes for wide ones", _encoding("onehot")),
        Move("ordinal", "categorical_encoding", "plain ordinal codes for the categorical columns", _encoding("ordinal")),
        Move("frequency_encoding", "categorical_encoding", "add frequency encoding of the levels",
             _extra_encoding("frequency"), "drop_last_encoding"),
        Move("native", "categorical_encoding", "native categorical columns (the models split on levels directly)", _encoding("native")),
        Move("drop_last_encoding", "categorical_encoding", "remove the most recently added extra encoding", _drop_last_extra),
        Move("rare_20", "categorical_encoding", "merge levels seen fewer than 20 times", _rare(20), "rare_1"),
        Move("rare_1", "categorical_encoding", "keep every level, even the rare ones", _rare(1), "rare_20"),
    ],
    "validation": [
        Move("target_log", "validation", "learn the target on a log scale (log1p / expm1)", _target_log),
        Move("fold_bagging", "validation", "bag 4 models, each trained on 3 of the 4 training folds", _fold_bagging),
        Move("blend_mode", "validation", "switch between greedy blend weights and a plain mean", _blend_mean),
        Move("refit_more", "validation", "grow 40% more rounds in the final refit", _refit_scale(1.4), "refit_same"),
        Move("refit_same", "validation", "refit with exactly the validated number of rounds", _refit_scale(1.0), "refit_more"),
    ],
    "media_loading": [
        Move("higher_resolution", "media_loading", "decode the images at 1.5 times the resolution",
             _resolution(True), "lower_resolution", True),
        Move("stronger_augmentation", "media_loading", "stronger train-time augmentation of the network",
             _augment(True), "weaker_augmentation", True),
        Move("longer_clips", "media_loading", "decode 1.5 times longer audio clips", _clip(True), "shorter_clips"),
        Move("lower_resolution", "media_loading", "decode the images at two thirds of the resolution",
             _resolution(False), "higher_resolution"),
        Move("weaker_augmentation", "media_loading", "weaker train-time augmentation of the network",
             _augment(False), "stronger_augmentation"),
        Move("shorter_clips", "media_loading", "decode shorter audio clips (two thirds)", _clip(False), "longer_clips"),
    ],
    "representation": [
        Move(f"add_{g}", "representation", text, _representation_group(g), "drop_last_representation")
        for g, text in {**IMAGE_GROUPS, **AUDIO_GROUPS}.items()
    ] + [
        Move("finer_orientations", "representation", "more gradient-orientation bins (finer shape features)",
             _media_detail("orientations", "image", (12, 18))),
        Move("larger_thumbnail", "representation", "a larger thumbnail as pixel features",
             _media_detail("pixels_side", "image", (12, 16))),
        Move("more_mels", "representation", "more mel bands in the spectrogram", _media_detail("n_mels", "audio", (64, 96))),
        Move("drop_last_representation", "representation", "remove the most recently added feature group",
             _drop_last_representation),
    ],
    "cleaning": [
        Move("lowercase", "cleaning", "lower-case categorical text so case variants are one level", _lowercase),
        Move("raw_strings", "cleaning", "toggle stripping of blanks around categorical text", _no_normalize),
    ],
}
MOVES: dict[str, Move] = {m.id: m for moves in CATALOGUE.values() for m in moves}


def moves_for(block: str) -> list[Move]:
    """The moves of a block, in the order the planner tries them (a join block has its own)."""
    if is_join_block(block):
        return join_moves(block)
    return CATALOGUE.get(block, [])


def find_move(block: str, move_id: str) -> Move | None:
    return next((m for m in moves_for(block) if m.id == move_id), None)


def applicable(spec: SolutionSpec, block: str) -> list[Move]:
    return [m for m in moves_for(block) if m.apply(spec) is not None]
