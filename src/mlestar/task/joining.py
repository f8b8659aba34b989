"""The code that joins auxiliary tables to the train rows: real Python, also embedded in scripts.

Intake finds join keys with these functions (``task/keys.py``), and the expert's join blocks run the
very same source (the expert's ``joining`` block is this module without its docstring and imports),
so a key that matched at intake is computed identically inside a script. Nothing here may rely on
anything but ``np`` and ``pd``, and every module-level name is a function or a constant.

A join plan is a plain dict (the script embeds it as a literal):
``{"name", "file", "links": [{"prefix", "keys": [[train column, train part, table column, table part]]}],
"relation": "lookup" | "many", "numbers", "categories", "dates", "aggregations",
"category_aggregations", "count", "order_by", "match_flag"}``.
A part says how a key column is read: ``value`` (as it is), ``number`` (text parsed as a number),
``text`` (case-insensitive), ``date`` / ``datehour`` / ``moment`` (a timestamp at day / hour /
second resolution) or ``year`` / ``month`` / ``day`` / ``hour`` (one part of a timestamp).
"""

import numpy as np
import pandas as pd

KEY_SEPARATOR = "\x1f"
TIMESTAMP_PARTS = ("date", "datehour", "moment", "year", "month", "day", "hour")


def key_text(values):
    """Key values as comparable text: 3, 3.0 and " 3" are one key; NaN and blanks are no key."""
    values = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        finite = np.isfinite(numbers)
        whole = finite & (numbers == np.round(numbers)) & (np.abs(numbers) < 2**53)
        text = np.full(len(numbers), np.nan, dtype=object)
        if whole.any():
            text[whole] = pd.Series(numbers[whole].astype(np.int64)).astype("str").to_numpy(dtype=object)
        if (finite & ~whole).any():
            text[finite & ~whole] = pd.Series(numbers[finite & ~whole]).astype("str").to_numpy(dtype=object)
        return pd.Series(text)
    text = values.astype("string").str.strip()
    present = (text != "").fillna(False).astype(bool)
    return text.astype(object).where(present, np.nan)


def timestamps(values):
    """Values read as UTC timestamps (ISO 8601 first, any other layout where that fails)."""
    values = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    text = values.astype("string")
    try:
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    except (ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.isna().sum() > text.isna().sum():
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    return parsed


def key_column(values, part):
    """One key column as text, read the way ``part`` says."""
    if part == "value":
        return key_text(values)
    if part == "number":
        return key_text(pd.to_numeric(pd.Series(values).reset_index(drop=True), errors="coerce"))
    if part == "text":
        text = key_text(values)
        return text.where(text.isna(), text.astype(str).str.lower())
    stamps = timestamps(values)
    if part in ("year", "month", "day", "hour"):
        return key_text(getattr(stamps.dt, part).astype(float))
    unit = {
        "date": pd.Timedelta(days=1),
        "datehour": pd.Timedelta(hours=1),
        "moment": pd.Timedelta(seconds=1),
    }[part]
    steps = (stamps - pd.Timestamp("1970-01-01", tz="UTC")) // unit
    return key_text(steps.astype(float))


def join_key(frame, columns, parts):
    """The composite key of every row as one text value (missing when any part is missing)."""
    pieces = [key_column(frame[column], part) for column, part in zip(columns, parts, strict=True)]
    key = pieces[0]
    if len(pieces) > 1:
        key = pieces[0].astype("string").str.cat([p.astype("string") for p in pieces[1:]], sep=KEY_SEPARATOR)
        key = key.astype(object).where(key.notna(), np.nan)
    return key


def joined_names(plan, link):
    """The columns one link of a plan adds, in order: the same names at intake and in every script."""
    prefix = link["prefix"]
    names = []
    if plan["relation"] == "lookup":
        names += [f"{prefix}_{c}" for c in plan["numbers"] + plan["dates"] + plan["categories"]]
    else:
        if plan["count"]:
            names.append(f"{prefix}_rows")
        for column in plan["numbers"] + plan["dates"]:
            names += [f"{prefix}_{column}_{how}" for how in plan["aggregations"]]
        for column in plan["categories"]:
            names += [f"{prefix}_{column}_{how}" for how in plan["category_aggregations"]]
    if plan["match_flag"]:
        names.append(f"{prefix}_matched")
    return names


def table_values(table, plan):
    """The table's columns a plan brings in: numbers as floats, timestamps as days since 1970,
    categories as stripped text."""
    out = pd.DataFrame(index=table.index)
    for column in plan["numbers"]:
        out[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column in plan["dates"]:
        days = (timestamps(table[column]) - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
        out[column] = days.to_numpy(dtype=float)
    for column in plan["categories"]:
        out[column] = key_text(table[column]).to_numpy(dtype=object)
    return out


def summarise(table, key, plan, prefix):
    """One row per key: the lookup's own row, or the aggregated rows of a one-to-many table."""
    values = table_values(table, plan)
    values["__key__"] = key.to_numpy(dtype=object)
    if plan.get("order_by") and plan["order_by"] in table.columns:
        # "first" and "last" follow time, not file order
        days = (timestamps(table[plan["order_by"]]) - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(
            days=1
        )
        values = values.iloc[np.argsort(days.to_numpy(dtype=float), kind="stable")]
    values = values[values["__key__"].notna()]
    if plan["relation"] == "lookup":
        values = values.drop_duplicates("__key__", keep="first").set_index("__key__")
        return values.rename(columns=lambda c: f"{prefix}_{c}")
    grouped = values.groupby("__key__", sort=False)
    parts = []
    if plan["count"]:
        parts.append(grouped.size().rename(f"{prefix}_rows").astype(float))
    numbers = plan["numbers"] + plan["dates"]
    for how in plan["aggregations"] if numbers else []:
        stats = grouped[numbers].agg(how)
        parts.append(stats.rename(columns={c: f"{prefix}_{c}_{how}" for c in numbers}).astype(float))
    for column in plan["categories"]:
        for how in plan["category_aggregations"]:
            if how == "nunique":
                stat = grouped[column].nunique().astype(float)
            elif how == "last":
                stat = grouped[column].last()
            else:  # the most frequent level (ties: the first seen)
                counts = values.groupby(["__key__", column], sort=False).size().rename("n").reset_index()
                top = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("__key__")
                stat = top.set_index("__key__")[column]
            parts.append(stat.rename(f"{prefix}_{column}_{how}"))
    return pd.concat(parts, axis=1)


def comparable(values):
    """A column's values in a form where equal columns are equal: numbers as floats (an integer
    column and its joined float copy are one column), everything else as it is."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float).reset_index(drop=True)
    return values.reset_index(drop=True)


def degenerate_columns(frame, columns):
    """Of ``columns``: those all missing or single-valued in ``frame``, and those repeating another
    column of ``frame`` value for value (the earlier one is kept)."""
    drop, seen = [], {}
    for column in frame.columns:
        values = comparable(frame[column])
        if column in columns and values.nunique(dropna=False) <= 1:
            drop.append(column)
            continue
        try:
            signature = (str(values.dtype), int(pd.util.hash_pandas_object(values, index=False).sum()))
        except TypeError:  # unhashable cells (lists from a JSON table) cannot repeat a joined column
            continue
        earlier = seen.get(signature)
        if earlier is not None and column in columns and values.equals(comparable(frame[earlier])):
            drop.append(column)
            continue
        seen.setdefault(signature, column)
    return drop


def attach_link(frame, features, plan, link):
    """``frame`` with one link's columns (row order and count unchanged), and its matched share."""
    if frame is None:
        return None, None
    train_columns = [k[0] for k in link["keys"]]
    key = join_key(frame, train_columns, [k[1] for k in link["keys"]])
    found = key.isin(features.index).to_numpy()
    joined = features.reindex(key.to_numpy(dtype=object))
    joined.index = frame.index
    if plan["match_flag"]:
        joined[f"{link['prefix']}_matched"] = found.astype(float)
    # a name the frame already has is left alone rather than renamed, so names stay predictable
    joined = joined[[c for c in joined_names(plan, link) if c in joined.columns and c not in frame.columns]]
    return pd.concat([frame, joined], axis=1), float(found.mean()) if len(found) else 0.0


def attach_table(train, test, table, plan):
    """Join one auxiliary table to the train rows (and the test rows, when given) by every link
    of its plan; joined columns that would only add noise or crash a model are dropped."""
    table_columns = [k[2] for link in plan["links"] for k in link["keys"]]
    missing = [
        c
        for c in table_columns + plan["numbers"] + plan["dates"] + plan["categories"]
        if c not in table.columns
    ]
    if missing:
        print(f"join {plan['name']}: {plan['file']} lacks the column(s) {missing}, not joined")
        return train, test
    for link in plan["links"]:
        key = join_key(table, [k[2] for k in link["keys"]], [k[3] for k in link["keys"]])
        features = summarise(table.reset_index(drop=True), key, plan, link["prefix"])
        before = list(train.columns)
        train, train_share = attach_link(train, features, plan, link)
        test, test_share = attach_link(test, features, plan, link)
        new = [c for c in train.columns if c not in before]
        drop = degenerate_columns(train, new)
        train = train.drop(columns=drop)
        if test is not None:
            test = test.drop(columns=[c for c in drop if c in test.columns])
        keys = " + ".join(k[0] if k[1] == "value" else f"{k[1]} of {k[0]}" for k in link["keys"])
        shares = f"{train_share:.1%} of train rows" + (
            "" if test is None else f", {test_share:.1%} of test rows"
        )
        dropped = (
            f", {len(drop)} dropped as constant, empty or duplicate ({', '.join(drop[:5])})" if drop else ""
        )
        print(
            f"joined {plan['file']} as {link['prefix']}_*: key {keys} matched {shares}; "
            f"{len(new) - len(drop)} new columns{dropped}"
        )
    return train, test
