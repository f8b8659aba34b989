"""Auxiliary tables: join keys found at intake, the join helpers scripts embed, and the expert's join
blocks, their ablation, refinement moves and debugger rules (no script runs here; see
test_aux_tables_runs.py for the scripts run for real)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from competitions import aux_competition

from mlestar.brain.expert import ExpertBrain
from mlestar.brain.expert.blocks import JOINING, changed_blocks
from mlestar.brain.expert.joins import MIN_COVERAGE, join_columns, plan_join
from mlestar.brain.expert.render import render_block, render_script
from mlestar.brain.expert.solution import revise, spec_of
from mlestar.brain.expert.spec import strip_state
from mlestar.brain.protocol import AblationSummary, BrainContext, ModelCard, ScoredScript
from mlestar.core.contract import find_blocks
from mlestar.core.task import DataFile, FileRole, JoinLink, KeyPair, TableProfile
from mlestar.task import load_task, profile
from mlestar.task.joining import attach_table, degenerate_columns, key_column, key_text
from mlestar.task.keys import find_links
from mlestar.task.profile import profile_columns

RNG = np.random.default_rng(3)


def links_of(
    aux: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame | None = None
) -> tuple[list[JoinLink], str]:
    return find_links(
        aux,
        train,
        test,
        targets=["target"],
        train_profiles=profile_columns(train),
        aux_profiles=profile_columns(aux),
    )


def key_set(link: JoinLink) -> set[tuple[str, str, str, str]]:
    return {(k.train, k.train_part, k.aux, k.aux_part) for k in link.keys}


# -- keys ---------------------------------------------------------------------------------------------


def test_a_timestamp_with_minutes_matches_an_hourly_table_by_station_date_and_hour():
    hours = pd.date_range("2021-03-01", periods=10 * 24, freq="h")
    weather = pd.DataFrame(
        [(s, h) for s in ("north", "south", "east") for h in hours], columns=["station", "at"]
    )
    weather = weather.assign(
        date=weather["at"].dt.strftime("%Y-%m-%d"),
        hour=weather["at"].dt.hour,
        rain=RNG.random(len(weather)).round(3),
    ).drop(columns=["at"])
    when = pd.Timestamp("2021-03-01") + pd.to_timedelta(RNG.integers(0, 10 * 24 * 60, 400), unit="m")
    train = pd.DataFrame(
        {
            "station": RNG.choice(["north", "south", "east"], 400),
            "when": when.strftime("%Y-%m-%d %H:%M"),
            "target": RNG.integers(0, 2, 400),
        }
    )
    links, note = links_of(weather, train)
    assert note == "" and len(links) == 1
    (link,) = links
    assert key_set(link) == {
        ("station", "value", "station", "value"),
        ("when", "date", "date", "date"),
        ("when", "hour", "hour", "value"),
    }
    assert link.coverage == 1.0 and link.lookup and link.describe().startswith("station + date of when")


def test_a_same_named_column_meaning_something_else_stays_out_of_the_key():
    # planes carry their build year; flights their flight year: joining on both would match nothing
    planes = pd.DataFrame(
        {
            "tailnum": [f"N{i:03d}" for i in range(300)],
            "year": RNG.integers(1990, 2013, 300),
            "seats": RNG.integers(50, 300, 300),
        }
    )
    train = pd.DataFrame(
        {"tailnum": RNG.choice(planes["tailnum"], 500), "year": 2013, "target": RNG.random(500)}
    )
    (link,), _ = links_of(planes, train)
    assert key_set(link) == {("tailnum", "value", "tailnum", "value")}


def test_a_float_code_with_nan_matches_zero_padded_text_codes_and_partial_coverage_is_measured():
    shops = pd.DataFrame({"shop_id": [f"{c:04d}" for c in range(1, 201)], "size": RNG.random(200)}).astype(
        {"shop_id": "string"}
    )
    codes = RNG.integers(1, 301, 600).astype(float)  # a third of the codes are not in the table
    codes[:60] = np.nan
    train = pd.DataFrame({"shop": codes, "target": RNG.random(600)})
    test = pd.DataFrame({"shop": RNG.integers(1, 301, 200).astype(float)})
    (link,), _ = links_of(shops, train, test)
    assert key_set(link) == {("shop", "value", "shop_id", "number")}
    expected = float(np.isin(codes, np.arange(1, 201)).mean())
    assert link.coverage == pytest.approx(expected, abs=1e-3) and 0.4 < link.coverage < 0.8
    assert link.test_coverage is not None and 0.5 < link.test_coverage < 0.85


def test_a_one_to_many_table_is_measured_as_such():
    owners = np.repeat(np.arange(100), RNG.integers(1, 9, 100))
    transactions = pd.DataFrame({"customer_id": owners, "amount": RNG.random(len(owners))})
    train = pd.DataFrame({"customer_id": np.arange(100), "target": RNG.random(100)})
    (link,), _ = links_of(transactions, train)
    assert key_set(link) == {("customer_id", "value", "customer_id", "value")}
    assert not link.lookup and link.rows_per_key == pytest.approx(len(owners) / 100, rel=1e-3)
    assert link.max_rows_per_key > 1 and link.train_keys == 100


def test_a_code_looked_up_under_another_name_links_once_per_train_column():
    airports = pd.DataFrame(
        {"faa": ["JFK", "LGA", "EWR", "BOS", "ATL", "ORD"], "alt": [13, 21, 18, 20, 1026, 672]}
    )
    train = pd.DataFrame(
        {
            "origin": RNG.choice(["JFK", "LGA", "EWR"], 300),
            "dest": RNG.choice(["BOS", "ATL", "ORD", "XXX"], 300),
            "target": RNG.random(300),
        }
    )
    links, _ = links_of(airports, train)
    assert [key_set(link) for link in links] == [
        {("origin", "value", "faa", "value")},
        {("dest", "value", "faa", "value")},
    ]
    assert links[0].coverage == 1.0 and 0.6 < links[1].coverage < 0.9


def test_timestamps_on_both_sides_match_at_the_coarser_resolution():
    table = pd.DataFrame(
        {
            "time_hour": pd.date_range("2013-01-01", periods=200, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ"),
            "temp": RNG.random(200),
        }
    )
    stamps = pd.Timestamp("2013-01-01", tz="UTC") + pd.to_timedelta(RNG.integers(0, 200 * 60, 300), unit="m")
    train = pd.DataFrame({"departure": stamps.strftime("%Y-%m-%d %H:%M:%S%z"), "target": RNG.random(300)})
    (link,), _ = links_of(table, train)
    assert key_set(link) == {("departure", "datehour", "time_hour", "datehour")} and link.coverage == 1.0


def test_tables_holding_the_target_or_no_key_are_noted_not_linked():
    train = pd.DataFrame({"city": RNG.choice(["a", "b"], 100), "target": RNG.random(100)})
    extra = train.assign(target=RNG.random(100))
    links, note = links_of(extra, train)
    assert links == [] and "holds the target column(s) target" in note
    links, note = links_of(pd.DataFrame({"zone": ["p", "q"], "v": [1.0, 2.0]}), train)
    assert links == [] and "no column matches" in note


# -- the join helpers scripts embed ---------------------------------------------------------------------


def test_key_text_reads_numbers_text_and_blanks_alike():
    assert key_text(pd.Series([3, 4])).tolist() == ["3", "4"]
    assert key_text(pd.Series([3.0, np.nan, 2.5])).tolist()[::2] == ["3", "2.5"]
    assert pd.isna(key_text(pd.Series([3.0, np.nan]))[1])
    text = key_text(pd.Series([" 3", "", None, "x"], dtype=object))
    assert text[0] == "3" and pd.isna(text[1]) and pd.isna(text[2]) and text[3] == "x"
    assert key_column(pd.Series(["007", "7.0", "x"]), "number").tolist()[:2] == ["7", "7"]
    assert key_column(pd.Series(["2021-03-04 13:27"]), "hour").tolist() == ["13"]
    assert (
        key_column(pd.Series(["2021-03-04 13:27"]), "datehour")[0]
        == key_column(pd.Series(["2021-03-04T13:00:00Z"]), "datehour")[0]
    )


def many_plan(**changes: object) -> dict:
    plan = {
        "name": "join_tx",
        "file": "tx.csv",
        "relation": "many",
        "links": [{"prefix": "tx", "keys": [["cid", "value", "cid", "value"]]}],
        "numbers": ["amount"],
        "dates": [],
        "categories": ["channel"],
        "aggregations": ["mean", "max", "last"],
        "category_aggregations": ["nunique", "top"],
        "count": True,
        "order_by": "at",
        "match_flag": True,
    }
    return {**plan, **changes}


def test_attach_table_aggregates_the_many_side_and_keeps_the_rows_in_order(capsys):
    table = pd.DataFrame(
        {
            "cid": ["2", "1", "2", "2", "9"],
            "amount": [10.0, 5.0, 30.0, 20.0, 1.0],
            "at": ["2020-01-03", "2020-01-01", "2020-01-01", "2020-01-02", "2020-01-01"],
            "channel": ["web", "shop", "web", "phone", "web"],
        }
    )
    train = pd.DataFrame({"cid": [2, 3, 1, 2.0], "x": [1.0, 2.0, 3.0, 4.0]})  # numbers against text codes
    test = pd.DataFrame({"cid": [1, 2]})
    joined, joined_test = attach_table(train, test, table, many_plan())
    assert list(joined["x"]) == [1.0, 2.0, 3.0, 4.0] and len(joined) == 4
    assert joined["tx_rows"].tolist()[::2] == [3.0, 1.0] and pd.isna(joined["tx_rows"][1])
    assert joined["tx_amount_mean"][0] == 20.0 and joined["tx_amount_max"][0] == 30.0
    assert joined["tx_amount_last"][0] == 10.0  # the latest row by "at", not the last in the file
    assert joined["tx_channel_top"][0] == "web" and joined["tx_channel_nunique"][0] == 2.0
    assert joined["tx_matched"].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert joined_test["tx_rows"].tolist() == [1.0, 3.0]
    assert "matched 75.0% of train rows, 100.0% of test rows" in capsys.readouterr().out


def test_degenerate_joined_columns_are_dropped_and_the_rest_kept(capsys):
    table = pd.DataFrame(
        {
            "code": ["a", "b", "c"],
            "flat": [1.0, 1.0, 7.0],
            "empty": [np.nan, np.nan, 5.0],
            "copy": [0.5, 2.0, 9.0],
            "size": [3.0, 4.0, 5.0],
        }
    )
    train = pd.DataFrame({"code": ["a", "b", "a", "b"], "x": [0.5, 2.0, 0.5, 2.0]})  # "c" never occurs
    plan = {
        "name": "join_codes",
        "file": "codes.csv",
        "relation": "lookup",
        "links": [{"prefix": "codes", "keys": [["code", "value", "code", "value"]]}],
        "numbers": ["flat", "empty", "copy", "size"],
        "dates": [],
        "categories": [],
        "aggregations": [],
        "category_aggregations": [],
        "count": False,
        "order_by": None,
        "match_flag": False,
    }
    joined, _ = attach_table(train, None, table, plan)
    assert list(joined.columns) == ["code", "x", "codes_size"]  # constant, all missing, a copy of x
    assert "2 new columns" not in capsys.readouterr().out
    assert degenerate_columns(joined, ["codes_size"]) == []


def test_the_validation_guard_keeps_histgradientboosting_off_all_missing_columns(all_ctx):
    from sklearn.ensemble import HistGradientBoostingClassifier

    spec = spec_of(ExpertBrain(max_rounds=5).write_candidate(all_ctx, ModelCard(name="hist_gb")))
    assert spec is not None
    code = render_block("validation", spec)
    namespace = {"pd": pd, "np": np, "TEXT_COLS": []}
    exec(code[code.index("FEATURE_FILTER =") : code.index("# ---- run:")], namespace)
    X = pd.DataFrame({"x": RNG.normal(size=200), "joined": np.nan, "flat": 1.0})
    y = (X["x"] > 0).astype(int)
    with pytest.raises(ValueError, match="window shape cannot be larger than input array shape"):
        HistGradientBoostingClassifier(max_iter=3).fit(X, y)  # the crash of the issue
    fit, (other,) = namespace["without_degenerate"](X, [X.copy()])
    assert list(fit.columns) == ["x"] == list(other.columns)
    HistGradientBoostingClassifier(max_iter=3).fit(fit, y)


# -- intake ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_task(tmp_path_factory):
    return load_task(aux_competition(tmp_path_factory.mktemp("aux_all"), "all", n_train=400, n_test=100))


def test_intake_profiles_every_auxiliary_table_with_its_links(all_task):
    tables = {f.path: f.table for f in all_task.files if f.role is FileRole.AUXILIARY}
    assert set(tables) == {
        "cities.csv",
        "complaints.csv",
        "grades.csv",
        "shops.parquet",
        "transactions.csv",
        "weather.csv",
    }
    assert all(t is not None and t.columns and t.sample == "all" for t in tables.values())
    assert tables["shops.parquet"].links[0].describe() == "shop = number of shop_id"
    assert not tables["transactions.csv"].links[0].lookup
    assert tables["complaints.csv"].links[0].coverage < MIN_COVERAGE
    assert tables["grades.csv"].links[0].describe() == "grade = grade_code"
    summary = all_task.summary()
    assert (
        "Auxiliary table weather.csv: joins on station + date of when = date of date + hour of when = hour"
        in summary
    )


def test_a_table_whose_key_search_fails_is_listed_without_links(tmp_path, monkeypatch):
    from mlestar.task import intake

    def broken(*args, **kwargs):
        raise TypeError("unorderable cells")

    monkeypatch.setattr(intake, "find_links", broken)
    task = load_task(aux_competition(tmp_path / "comp", "reference", n_train=100, n_test=30))
    (grades,) = [f for f in task.files if f.path == "grades.csv"]
    assert grades.table is not None and grades.table.links == [] and grades.table.columns
    assert grades.table.note == "the key search failed: unorderable cells"


def test_a_spread_sample_sees_the_keys_of_a_large_sorted_file(tmp_path, monkeypatch):
    monkeypatch.setattr(profile, "FULL_READ_BYTES", 20_000)
    monkeypatch.setattr(profile, "SAMPLE_BYTES", 16_000)
    path = tmp_path / "sorted.csv"
    pd.DataFrame({"key": np.repeat(np.arange(2000), 10), "v": 1.5}).to_csv(path, index=False)
    head = profile.read_table_sample(path)
    spread = profile.read_spread_sample(path)
    assert head.frame["key"].max() < 300  # the head of a sorted file holds its first keys only
    assert spread.spread and spread.frame["key"].max() > 1900 and spread.frame["key"].min() == 0
    assert spread.rows == head.rows and list(spread.frame.columns) == ["key", "v"]


# -- the expert's joins ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_ctx(all_task):
    return BrainContext(
        task=all_task,
        seed=0,
        n_dev_rows=400,
        script_timeout_s=120,
        threads=1,
        available_packages=["sklearn", "lightgbm", "numpy", "pandas"],
    )


@pytest.fixture(scope="module")
def joined(all_ctx):
    brain = ExpertBrain(max_rounds=20)
    base = brain.write_candidate(all_ctx, ModelCard(name="lightgbm"))
    return brain, base, brain.check_data_usage(all_ctx, base)


JOIN_BLOCKS = ["join_cities", "join_grades", "join_shops", "join_transactions", "join_weather"]


def test_data_usage_joins_each_table_in_a_block_of_its_own_and_names_the_one_skipped(joined, all_ctx):
    brain, base, report = joined
    assert not report.all_used and report.script is not None
    assert "complaints.csv: its best key (customer_id) matches only" in report.reason
    for name in ("cities.csv", "grades.csv", "shops.parquet", "transactions.csv", "weather.csv"):
        assert name in report.reason
    blocks = find_blocks(report.script.code)
    assert list(blocks)[: 3 + len(JOIN_BLOCKS)] == ["setup", "loading", JOINING] + JOIN_BLOCKS
    assert all(blocks[n] == find_blocks(base.code)[n] for n in find_blocks(base.code))  # the rest untouched
    spec = spec_of(report.script)
    assert spec is not None and report.script.code == render_script(spec)  # spliced exactly as rendered
    assert {j.name: j.relation for j in spec.joins}["join_transactions"] == "many"
    assert brain.check_data_usage(all_ctx, base).script.code == report.script.code  # deterministic
    again = brain.check_data_usage(all_ctx, report.script)
    assert again.all_used and again.script is None and "complaints.csv" in again.reason


def test_join_blocks_come_and_go_with_the_spec(joined):
    _, base, report = joined
    spec = spec_of(report.script)
    assert spec is not None
    fewer = spec.copy_deep()
    fewer.joins = [j for j in fewer.joins if j.name != "join_grades"]
    assert changed_blocks(spec, fewer) == ["join_grades"]
    trimmed = revise(report.script, spec, fewer)
    assert trimmed.code == render_script(fewer) and "join_grades" not in find_blocks(trimmed.code)
    none = spec.copy_deep()
    none.joins = []
    assert changed_blocks(spec, none) == [JOINING] + JOIN_BLOCKS
    assert strip_state(revise(report.script, spec, none).code) == strip_state(base.code)


def test_the_ablation_measures_every_joined_table_by_its_block(joined, all_ctx):
    brain, _, report = joined
    ablation = brain.write_ablation(all_ctx, ScoredScript(script=report.script, score=0.9), [])
    variants = re.findall(r"^def run_(\w+)\(", ablation.code, re.MULTILINE)
    assert variants[0] == "baseline" and variants[1:6] == JOIN_BLOCKS and len(variants) >= 7
    components = ablation.info["expert"]["components"]
    assert components["join_weather"]["text"].startswith("without the weather.csv table (joined on station")
    spec = spec_of(report.script)
    assert spec is not None
    weather = next(j for j in spec.joins if j.name == "join_weather")
    start = ablation.code.index("def run_join_weather(")
    body = ablation.code[start : ablation.code.index("def run_", start + 1)]
    assert all(f'"{c}"' in body for c in join_columns(weather)["weather"])  # its columns taken out by name
    summary = brain.summarize_ablation(
        all_ctx, ablation, "ABLATION baseline: 0.9\nABLATION join_weather: 0.8\nABLATION join_cities: 0.89\n"
    )
    assert "Variant 'join_weather' (without the weather.csv table" in summary.text
    assert summary.effects["join_weather"] == pytest.approx(-0.1)


def test_refinement_targets_the_join_that_matters_and_changes_its_aggregation(joined, all_ctx):
    brain, _, report = joined
    summary = AblationSummary(text="", effects={"join_transactions": -0.08, "encoding": -0.01})
    scored = ScoredScript(script=report.script, score=0.9)
    block = brain.extract_block(all_ctx, scored, summary, [])
    assert (
        block.name == "join_transactions"
        and block.block == find_blocks(report.script.code)["join_transactions"]
    )
    assert block.plan.data["move"] == "join_spread"
    refined = brain.implement_plan(all_ctx, report.script, block.block, block.plan)
    before, after = find_blocks(report.script.code), find_blocks(refined.code)
    assert [n for n in after if after[n] != before[n]] == ["join_transactions"]
    new = spec_of(refined)
    assert new is not None
    assert next(j for j in new.joins if j.name == "join_transactions").aggregations[-2:] == ["std", "sum"]


def test_the_debugger_recognises_degenerate_features_and_failing_joins(joined, all_ctx):
    brain, _, report = joined
    script = report.script
    crash = (
        'Traceback (most recent call last):\n  File "script.py", line 900, in fit_lightgbm\n'
        "ValueError: window shape cannot be larger than input array shape\n"
    )
    fixed = brain.debug(all_ctx, script, crash)
    assert fixed is not None and 'FEATURE_FILTER = "strict"' in find_blocks(fixed.code)["validation"]
    assert [
        n for n in find_blocks(fixed.code) if find_blocks(fixed.code)[n] != find_blocks(script.code)[n]
    ] == ["validation"]
    again = brain.debug(all_ctx, fixed, crash)  # strict already: the newest join goes
    assert again is not None and "join_weather" not in find_blocks(again.code)
    failing = (
        '  File "script.py", line 480, in <module>\n'
        '    train, test = attach_table(train, test, read_table("shops.parquet"), JOIN_SHOPS)\n'
        "KeyError: 'shop_id'\n"
    )
    without = brain.debug(all_ctx, script, failing)
    assert without is not None and "join_shops" not in find_blocks(without.code)
    assert "join_weather" in find_blocks(without.code)


def test_plan_join_skips_tables_matching_almost_nothing(all_task):
    profile_ = TableProfile(
        columns=profile_columns(pd.DataFrame({"k": ["a", "b"], "v": [1.0, 2.0]})),
        sampled_rows=2,
        links=[JoinLink(keys=[KeyPair(train="k", aux="k")], coverage=0.5, test_coverage=0.02)],
    )
    item = DataFile(path="rare.csv", role=FileRole.AUXILIARY, table=profile_)
    reason = plan_join(item, all_task, set())
    assert isinstance(reason, str) and "only 2.0% of the test rows" in reason


def test_mlestar_profile_lists_each_tables_key_and_coverage(tmp_path, capsys):
    from mlestar.cli import main

    competition = aux_competition(tmp_path / "comp", "reference", n_train=200, n_test=50)
    try:
        main(["profile", str(competition)])
    except SystemExit as exc:
        assert not exc.code
    out = capsys.readouterr().out
    assert "Auxiliary tables: join keys" in out
    assert "grade = grade_code" in out and "100.0%" in out
