"""Task summary, web-search queries and model retrieval for the expert brain."""

from __future__ import annotations

from mlestar.brain.expert.cards import Card, rank_cards
from mlestar.brain.expert.facts import task_facts
from mlestar.brain.protocol import BrainContext, ModelCard

_TYPE_WORDS = {
    "binary": "binary classification",
    "multiclass": "multi-class classification",
    "multilabel": "multi-label classification",
    "regression": "regression",
}


def summarize(ctx: BrainContext) -> str:
    f = task_facts(ctx)
    task = ctx.task
    kind = _TYPE_WORDS.get(f.task_type, f.task_type)
    if f.media is not None:
        parts = [f"{kind.capitalize()} of {f.media.kind} files: predict {', '.join(f.targets)} "
                 f"({task.n_train_rows or f.n_rows} training files"]
    else:
        parts = [
            f"{kind.capitalize()} on {f.modality} data: predict {', '.join(f.targets)} "
            f"({task.n_train_rows or f.n_rows} training rows, {len(f.feature_cols) or f.n_features} features"
        ]
    mix = []
    if f.numeric_cols:
        mix.append(f"{len(f.numeric_cols)} numeric")
    if f.cat_cols:
        mix.append(f"{len(f.cat_cols)} categorical")
    if f.text_cols:
        mix.append(f"{len(f.text_cols)} text")
    if f.date_cols:
        mix.append(f"{len(f.date_cols)} date")
    parts[0] += (": " + ", ".join(mix) if mix else "") + ")."
    if f.classification and task.classes:
        parts.append(f"{len(task.classes)} classes.")
    parts.append(
        f"Metric: {f.metric} ({'lower' if f.lower_is_better else 'higher'} is better); "
        f"submission: {'probabilities' if f.submit_proba else 'labels' if f.classification else 'values'}"
        + (f" per {f.id_col}." if f.id_col else ".")
    )
    if f.has_missing:
        parts.append("Some features have missing values.")
    if f.aux_files:
        parts.append(f"Auxiliary tables: {', '.join(f.aux_files)}.")
    return " ".join(parts)


def queries(ctx: BrainContext) -> list[str]:
    f = task_facts(ctx)
    kind = _TYPE_WORDS.get(f.task_type, f.task_type)
    found = [
        f"winning kaggle solution {kind} {f.modality} data {f.metric}",
        f"best models for {f.modality} {kind} {f.metric} gradient boosting example code",
    ]
    if f.text_cols:
        found.append(f"tf-idf n-gram linear model {kind} text competition example")
    if f.cat_cols:
        found.append("high cardinality categorical features target encoding catboost lightgbm")
    if ctx.task.name:
        found.append(f"{ctx.task.name} kaggle competition solution")
    return found


def card_to_model_card(card: Card) -> ModelCard:
    return ModelCard(name=card.name, description=f"{card.title}. {card.description}", example_code=card.example_code)


def retrieve(ctx: BrainContext, n: int) -> list[ModelCard]:
    return [card_to_model_card(c) for c in rank_cards(task_facts(ctx), ctx.available_packages)[: max(0, n)]]
