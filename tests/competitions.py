"""The one builder of tiny competitions for the tests, and a tiny pipeline configuration.

A plain module rather than conftest.py: tests/browser has its own conftest, and two modules named
``conftest`` cannot both be imported by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TINY_CONFIG = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 2,
    "debug_retries": 1,
    "script_timeout_s": 120,
    "workers": 2,
    "threads_per_script": 1,
}


def make_competition(
    root: Path, kind: str = "binary", n_rows: int = 300, seed: int = 0, *, aux: bool = False, clean: bool = False
) -> Path:
    """A tiny competition with private answers and a real signal. ``kind``: binary, regression,
    multiclass or text; ``aux`` adds a table the first draft does not use; unless ``clean``, the
    categoricals have messy spacing and a second one has missing values (real data does)."""
    rng = np.random.default_rng(seed)
    n = n_rows + n_rows // 4
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["paris", "oslo", "lima", "kyiv", *([] if clean else [" oslo"])], size=n)
    effect = pd.Series(city).str.strip().map({"paris": 0.8, "oslo": -0.5, "lima": 0.2, "kyiv": -0.9}).to_numpy()
    x3 = np.where(rng.random(n) < 0.15, np.nan, rng.uniform(0, 10, n))
    plan = np.where(rng.random(n) < 0.1, None, rng.choice(["basic", "pro", "team"], size=n))
    signal = 1.5 * x1 - x2 + effect + 0.1 * np.nan_to_num(x3, nan=5.0)
    frame = pd.DataFrame({"id": np.arange(n) + 1000, "x1": x1.round(4), "x2": x2.round(4), "city": city,
                          "x3": x3.round(3), "plan": plan})
    if clean:
        frame = frame.drop(columns=["plan"])
    if kind == "text":
        good, bad = ["good", "great", "fine", "love", "nice"], ["bad", "awful", "meh", "hate", "poor"]
        words = np.array(good + bad)
        docs = [" ".join(rng.choice(np.concatenate([words, good if s > 0.3 else bad]), size=rng.integers(5, 15)))
                for s in signal]
        frame = pd.DataFrame({"id": np.arange(n), "review": docs, "hint": x2.round(3)})
        frame["label"] = np.where(signal > 0.3, "positive", "negative")
        target, sample_value, metric = "label", "positive", "Submissions are evaluated on accuracy."
    elif kind == "binary":
        frame["target"] = (signal + rng.normal(scale=0.7, size=n) > 0.3).astype(int)
        target, sample_value, metric = "target", 0.5, "Evaluated on area under the ROC curve."
    elif kind == "multiclass":
        frame["species"] = np.select([signal < -0.5, signal < 1.0], ["a", "b"], "c")
        target, sample_value, metric = "species", None, "Submissions are evaluated with multi-class log loss."
    elif kind == "regression":
        frame["target"] = (10 + 3 * signal + rng.normal(size=n)).round(3)
        target, sample_value, metric = "target", 0.0, "Scored by root mean squared error (RMSE)."
    else:
        raise ValueError(kind)
    root.mkdir(parents=True, exist_ok=True)
    train, test = frame.iloc[:n_rows], frame.iloc[n_rows:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(root / "test.csv", index=False)
    if kind == "multiclass":
        sample = pd.DataFrame({"id": test["id"], "a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    else:
        sample = pd.DataFrame({"id": test["id"], target: sample_value})
    sample.to_csv(root / "sample_submission.csv", index=False)
    (root / "private").mkdir(exist_ok=True)
    test[["id", target]].to_csv(root / "private" / "answers.csv", index=False)
    if aux:
        pd.DataFrame({"city": ["paris", "oslo", "lima", "kyiv"], "population": [2.1, 0.7, 10.0, 2.9]}).to_csv(
            root / "cities.csv", index=False
        )
    (root / "description.md").write_text(f"# Tiny {kind}\n\nPredict `{target}`.\n\n## Evaluation\n\n{metric}\n")
    return root


# -- intake and grading layouts: multi-class probabilities, several labels, MLE-bench folders --------

SPECIES = ["setosa", "versicolor", "virginica"]


def write_description(folder: Path, evaluation: str, title: str = "A competition") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "description.md").write_text(
        f"# {title}\n\n## Overview\n\nImprove the accuracy of our forecasts.\n\n"
        f"## Evaluation\n\n{evaluation}\n\n## Submission File\n\nOne row per test id.\n"
    )


def multiclass_competition(root: Path, *, n_train: int = 240, n_test: int = 60, seed: int = 1) -> Path:
    """Species classification scored by log loss; the submission has one probability column per class."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    label = rng.choice(SPECIES, size=n)
    shift = pd.Series(label).map({"setosa": 0.0, "versicolor": 1.5, "virginica": 3.0}).to_numpy()
    frame = pd.DataFrame(
        {
            "id": [f"s{i:04d}" for i in range(n)],
            "petal": (shift + rng.normal(size=n)).round(4),
            "sepal": rng.normal(size=n).round(4),
            "color": rng.choice(["red", "blue"], size=n),
            "species": label,
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=["species"]).to_csv(root / "test.csv", index=False)
    sample = pd.DataFrame({"id": test["id"]})
    for name in SPECIES:
        sample[name] = 1 / 3
    sample.to_csv(root / "sample_submission.csv", index=False)
    (root / "private").mkdir(exist_ok=True)
    test[["id", "species"]].to_csv(root / "private" / "test.csv", index=False)
    write_description(root, "Submissions are evaluated using the multi-class logarithmic loss.", "Species")
    return root


def multilabel_competition(root: Path, *, n_train: int = 200, n_test: int = 50, seed: int = 2) -> Path:
    """Comment tagging: three 0/1 label columns, scored by the mean column-wise ROC AUC."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    words = np.array(["good", "bad", "awful", "great", "fine", "meh", "nice", "terrible", "ok", "wow"])
    text = [" ".join(rng.choice(words, size=rng.integers(8, 20))) for _ in range(n)]
    frame = pd.DataFrame({"id": np.arange(n), "comment_text": text})
    for name in ("toxic", "insult", "threat"):
        frame[name] = (rng.random(n) < 0.3).astype(int)
    root.mkdir(parents=True, exist_ok=True)
    frame.iloc[:n_train].to_csv(root / "train.csv", index=False)
    frame.iloc[n_train:][["id", "comment_text"]].to_csv(root / "test.csv", index=False)
    sample = frame.iloc[n_train:][["id"]].copy()
    for name in ("toxic", "insult", "threat"):
        sample[name] = 0.5
    sample.to_csv(root / "sample_submission.csv", index=False)
    (root / "private").mkdir(exist_ok=True)
    frame.iloc[n_train:][["id", "toxic", "insult", "threat"]].to_csv(
        root / "private" / "answers.csv", index=False
    )
    write_description(root, "Submissions are evaluated on the mean column-wise ROC AUC.", "Toxic")
    return root


def mlebench_competition(root: Path, *, with_private: bool = True) -> Path:
    """An MLE-bench prepared competition: <root>/prepared/public and <root>/prepared/private."""
    public = root / "prepared" / "public"
    rng = np.random.default_rng(3)
    n_train, n_test = 150, 50
    n = n_train + n_test
    frame = pd.DataFrame(
        {
            "Id": np.arange(1, n + 1),
            "LotArea": rng.integers(1000, 20000, size=n),
            "Quality": rng.choice(["low", "mid", "high"], size=n),
            "SalePrice": rng.uniform(50_000, 500_000, size=n).round(2),
        }
    )
    public.mkdir(parents=True)
    frame.iloc[:n_train].to_csv(public / "train.csv", index=False)
    frame.iloc[n_train:].drop(columns=["SalePrice"]).to_csv(public / "test.csv", index=False)
    pd.DataFrame({"Id": frame.Id.iloc[n_train:], "SalePrice": 180_000.0}).to_csv(
        public / "sample_submission.csv", index=False
    )
    write_description(
        public,
        "Submissions are evaluated on Root-Mean-Squared-Error (RMSE) between the logarithm of the "
        "predicted value and the logarithm of the observed sales price.",
        "House prices",
    )
    if with_private:
        private = root / "prepared" / "private"
        private.mkdir(parents=True)
        frame.iloc[n_train:][["Id", "SalePrice"]].to_csv(private / "test.csv", index=False)
    return root


def mlebench_prepared(data_dir: Path, competition_id: str, kind: str = "binary", n_rows: int = 200,
                      seed: int = 0) -> Path:
    """A tiny competition laid out as ``mlebench prepare`` leaves one: ``DATA/<id>/prepared/public``
    (train, test, sample submission, description) and the answers in ``prepared/private/test.csv``."""
    root = data_dir / competition_id
    public = root / "prepared" / "public"
    make_competition(public, kind, n_rows, seed)
    private = root / "prepared" / "private"
    private.mkdir(parents=True)
    (public / "private" / "answers.csv").rename(private / "test.csv")
    (public / "private").rmdir()
    return root


# -- competitions whose signal sits partly in auxiliary tables (issue 18) ----------------------------

AUX_CASES = ("hourly", "lookup", "many", "reference", "all")


def aux_competition(root: Path, case: str, *, n_train: int = 1500, n_test: int = 400, seed: int = 7) -> Path:
    """A competition whose target depends on tables the train file does not hold. ``case``:
    - ``hourly``: an hourly weather table keyed by station + date + hour, the train rows carrying a
      timestamp with minutes (composite key, date parts);
    - ``lookup``: a shop table (parquet) keyed by a zero-padded text code, the train's code a float
      with NaN, listing 70% of the shops (mismatched dtypes, partial coverage);
    - ``many``: a transactions table with 0-30 rows per customer (one-to-many, aggregated);
    - ``reference``: two small reference tables, one keyed under another name, with a column left
      empty by the join and a copy of another column (degenerate features);
    - ``all``: all of them at once, plus a table keyed by 2% of the customers (matches almost nothing).
    Binary targets are scored by ROC AUC, the lookup case's regression target by RMSE."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    frame = pd.DataFrame({"customer_id": np.arange(n) + 10_000, "x": rng.normal(size=n).round(4)})
    signal = 0.3 * frame["x"].to_numpy()
    tables: dict[str, pd.DataFrame] = {}
    kinds = AUX_CASES[:-1] if case == "all" else (case,)
    if case not in AUX_CASES:
        raise ValueError(case)
    if "hourly" in kinds:
        stations = ["north", "south", "east", "west", "hill"]
        start = pd.Timestamp("2021-03-01")
        hours = pd.date_range(start, periods=40 * 24, freq="h")
        weather = pd.DataFrame([(s, h) for s in stations for h in hours], columns=["station", "stamp"])
        rows = len(weather)
        weather["rain"] = np.where(rng.random(rows) < 0.3, rng.gamma(2.0, 2.0, rows), 0.0).round(2)
        daily = np.sin(weather["stamp"].dt.hour / 24 * 2 * np.pi)
        weather["temp"] = (8 + 6 * daily + rng.normal(size=rows)).round(1)
        weather["date"] = weather["stamp"].dt.strftime("%Y-%m-%d")
        weather["hour"] = weather["stamp"].dt.hour
        tables["weather.csv"] = weather[["station", "date", "hour", "temp", "rain"]]
        frame["station"] = rng.choice(stations, size=n)
        when = start + pd.to_timedelta(rng.integers(0, 40 * 24 * 60, size=n), unit="m")
        frame["when"] = when.strftime("%Y-%m-%d %H:%M")
        rain = weather.set_index(["station", "stamp"])["rain"]
        hour_keys = list(zip(frame["station"], when.floor("h"), strict=True))
        signal += 0.6 * np.minimum(rain.reindex(hour_keys).to_numpy(), 6.0)
    if "lookup" in kinds:
        shops = pd.DataFrame({"code": np.arange(1, 601)})
        shops["size"] = rng.gamma(2.0, 1.0, len(shops)).round(3)
        shops["format"] = rng.choice(["mall", "street", "outlet"], len(shops))
        frame["shop"] = rng.integers(1, 601, size=n).astype(float)
        frame.loc[rng.random(n) < 0.05, "shop"] = np.nan
        by_code = shops.set_index("code")
        size = by_code["size"].reindex(frame["shop"]).to_numpy()
        effects = {"mall": 1.0, "street": 0.0, "outlet": -1.0}
        form = by_code["format"].reindex(frame["shop"]).map(effects).to_numpy()
        signal += np.nan_to_num(1.0 * size + 0.8 * form)
        listed = shops.sample(frac=0.7, random_state=seed).sort_values("code")
        # parquet keeps the zero-padded codes text (a CSV reader would turn them into integers)
        tables["shops.parquet"] = listed.assign(shop_id=listed["code"].map(lambda c: f"{c:04d}"))[
            ["shop_id", "size", "format"]].reset_index(drop=True)
    if "many" in kinds:
        counts = rng.integers(0, 31, size=n)
        owner = np.repeat(frame["customer_id"].to_numpy(), counts)
        spend_level = rng.gamma(2.0, 10.0, size=n)
        amount = rng.gamma(2.0, np.repeat(spend_level, counts) / 2.0).round(2)
        stamp = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, len(owner)), unit="h")
        channel = rng.choice(["web", "shop", "phone"], len(owner))
        at = stamp.strftime("%Y-%m-%d %H:%M")
        transactions = pd.DataFrame({"customer_id": owner, "amount": amount, "at": at, "channel": channel})
        tables["transactions.csv"] = transactions.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        signal += 0.05 * counts + 0.04 * spend_level - 1.5
    if "reference" in kinds:
        cities = pd.DataFrame({"city": [f"C{i:03d}" for i in range(150)]})
        cities["population"] = rng.lognormal(3.0, 1.0, len(cities)).round(2)
        cities["altitude"] = rng.uniform(0, 2000, len(cities)).round(0)
        cities["population_copy"] = cities["population"]
        # surveyed only in the two cities no row comes from: all missing once joined
        cities["survey"] = np.where(np.arange(len(cities)) >= 148, [1.0, 2.0] * 75, np.nan)
        frame["city"] = rng.choice(cities["city"].to_numpy()[:148], size=n)
        by_city = cities.set_index("city")
        signal += 0.6 * np.log(by_city["population"].reindex(frame["city"]).to_numpy()) - 1.8
        signal += 0.0006 * by_city["altitude"].reindex(frame["city"]).to_numpy() - 0.6
        tables["cities.csv"] = cities
        grades = pd.DataFrame({"grade_code": ["g1", "g2", "g3", "g4"], "weight": [0.5, 1.0, 2.0, 4.0],
                               "label": ["light", "medium", "heavy", "huge"]})
        tables["grades.csv"] = grades
        frame["grade"] = rng.choice(grades["grade_code"].to_numpy(), size=n)
    if case == "all":
        few = rng.choice(frame["customer_id"].to_numpy(), size=30, replace=False)
        tables["complaints.csv"] = pd.DataFrame({"customer_id": few, "complaints": rng.integers(1, 5, 30)})
    noise = rng.normal(scale=0.5, size=n)
    if case == "lookup":
        frame["target"] = (10 + 2.0 * signal + noise).round(3)
        target, sample_value, metric = "target", 0.0, "Scored by root mean squared error (RMSE)."
    else:
        frame["target"] = (signal + noise > np.median(signal)).astype(int)
        target, sample_value, metric = "target", 0.5, "Evaluated on area under the ROC curve."
    root.mkdir(parents=True, exist_ok=True)
    train, test = frame.iloc[:n_train], frame.iloc[n_train:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(root / "test.csv", index=False)
    sample = pd.DataFrame({"customer_id": test["customer_id"], target: sample_value})
    sample.to_csv(root / "sample_submission.csv", index=False)
    (root / "private").mkdir(exist_ok=True)
    test[["customer_id", target]].to_csv(root / "private" / "answers.csv", index=False)
    for name, table in tables.items():
        if name.endswith(".parquet"):
            table.to_parquet(root / name, index=False)
        else:
            table.to_csv(root / name, index=False)
    description = f"# Auxiliary tables: {case}\n\nPredict `{target}`.\n\n## Evaluation\n\n{metric}\n"
    (root / "description.md").write_text(description)
    return root
