"""The script contract, owned by one module: the score line, the final flag, blocks, ablation lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlestar.core import contract

SRC = Path(__file__).resolve().parents[1] / "src" / "mlestar"


def test_the_score_label_is_defined_in_exactly_one_python_module() -> None:
    holders = [
        p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if contract.SCORE_LABEL in p.read_text()
    ]
    assert holders == ["core/contract.py"]
    # Templates and prompts get it as a Jinja global instead of spelling it out.
    spelled = [
        p.name for p in SRC.rglob("*") if p.suffix in (".j2", ".md") and contract.SCORE_LABEL in p.read_text()
    ]
    assert spelled == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Validation Performance: 0.8123", 0.8123),
        ("noise\nFinal Validation Performance: 1\nFinal Validation Performance = 0.5\n", 0.5),
        ("final validation performance: np.float64(0.75)", 0.75),
        ("Final Validation Performance: tensor(0.25)", 0.25),
        ("Final Validation Performance: nan", None),
        ("Final Validation Performance: inf", None),
        ("Validation: 0.9", None),
    ],
)
def test_the_last_finite_score_line_counts(text: str, expected: float | None) -> None:
    assert contract.parse_score(text) == expected


def test_score_lines_written_by_code_parse_back() -> None:
    namespace: dict[str, object] = {}
    printed: list[str] = []
    namespace["print"] = printed.append
    exec(f"VAL = 0.123456789012\n{contract.score_print('VAL')}\n", namespace)
    assert contract.parse_score(printed[0]) == pytest.approx(0.123456789012)
    assert contract.parse_score(contract.score_line(0.5)) == 0.5


def test_the_final_flag_is_switched_once_and_can_be_dropped() -> None:
    code = f"{contract.final_flag_line(False)}\nx = 1\n{contract.final_flag_line(False)}\n"
    switched = contract.set_final_mode(code)
    assert switched.splitlines() == ["FINAL_MODE = True", "x = 1", "FINAL_MODE = False"]
    assert contract.drop_final_flag(switched).splitlines() == ["x = 1", "FINAL_MODE = False"]


def test_blocks_are_found_verbatim_and_nested_ones_are_skipped() -> None:
    model = contract.wrap_block("model", "m = 1")
    nested = "def f():\n    " + contract.wrap_block("inner", "pass").replace("\n", "\n    ").rstrip() + "\n"
    code = contract.wrap_block("setup", "import os") + "\n" + model + nested
    blocks = contract.find_blocks(code)
    assert set(blocks) == {"setup", "model"} and blocks["model"] == model and blocks["model"] in code
    assert contract.block_name(model) == "model" and contract.block_body(model) == "m = 1\n"


def test_ablation_lines_round_trip() -> None:
    printed: list[str] = []
    exec(contract.ablation_print("name", "value"), {"name": "model", "value": 0.5, "print": printed.append})
    output = "\n".join([*printed, "ABLATION broken: nan", "ABLATION features: 0.25"])
    assert contract.ablation_results(output) == {"model": 0.5, "features": 0.25}
