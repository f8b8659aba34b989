"""The script contract: what every generated script prints, writes and is marked with.

One module owns it. The executor reads scores with it, the brains write scripts that follow it
(the expert's templates and the LLM prompts get these values as Jinja globals), the pipeline
checks results against it. docs/script-contract.md describes the same in prose.
"""

from __future__ import annotations

import math
import re

# -- files a script reads and writes -------------------------------------------------------------
INPUT_DIR = "input"  # read-only view of the competition data, plus the run's split
WORKING_DIR = "working"  # scratch space
FINAL_DIR = "final"  # what a final run hands back
# What a final run fitted, kept under ./final/fitted/ (expert scripts); `mlestar predict` runs the
# final script again on new rows with that folder linked at ./fitted/, and the script loads instead
# of training.
FITTED_DIR = "fitted"
SCRIPT_NAME = "script.py"
FOLDS_NAME = "folds.csv"  # row, fold (0 = validation hold-out), dev (1 = development subsample)
SUBMISSION_NAME = "submission.csv"
VAL_PREDICTIONS_NAME = "val_predictions.csv"

# -- the score line ------------------------------------------------------------------------------
SCORE_LABEL = "Final Validation Performance"

# The value may come wrapped the way numpy/torch scalars print (`np.float64(0.81)`, `tensor(0.8)`),
# because generated scripts often print such objects directly instead of a plain float.
_NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_SCORE_RE = re.compile(rf"{SCORE_LABEL}\s*[:=]\s*(?:[A-Za-z_][\w.]*\(\s*)?({_NUMBER})", re.IGNORECASE)


def score_line(value: float) -> str:
    """The line a script prints, e.g. ``Final Validation Performance: 0.8123``."""
    return f"{SCORE_LABEL}: {value:.10g}"


def score_print(expression: str) -> str:
    """Python source that prints the score line for ``expression`` (for generated code)."""
    return f'print(f"{SCORE_LABEL}: {{{expression}:.10g}}")'


def mentions_score_line(text: str) -> bool:
    return SCORE_LABEL in text


def rename_score_label(code: str, replacement: str) -> str:
    """``code`` with its score label replaced, so a wrapped script no longer reports a score."""
    return code.replace(SCORE_LABEL, replacement)


def last_score_value(text: str) -> str | None:
    """The raw value text of the last score line in ``text``, or None when there is none."""
    last = None
    for match in _SCORE_RE.finditer(text):
        last = match.group(1)
    return last


def score_from_value(value: str | None) -> float | None:
    """A finite float from a raw score value; NaN/inf are no score at all."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def parse_score(stdout: str) -> float | None:
    """The value of the LAST score line; None if absent or not finite."""
    return score_from_value(last_score_value(stdout))


# -- the final-mode switch -------------------------------------------------------------------------
FINAL_FLAG = "FINAL_MODE"
_FINAL_OFF = re.compile(rf"^{FINAL_FLAG} = False\b", re.MULTILINE)
_FINAL_LINE = re.compile(rf"^{FINAL_FLAG} = (?:False|True)[^\n]*\n", re.MULTILINE)


def final_flag_line(final: bool) -> str:
    return f"{FINAL_FLAG} = {final}"


def set_final_mode(code: str) -> str:
    """The script switched to final mode (first ``FINAL_MODE = False`` line turned on)."""
    return _FINAL_OFF.sub(f"{FINAL_FLAG} = True", code, count=1)


def drop_final_flag(code: str) -> str:
    """The script without its own ``FINAL_MODE = ...`` line (a wrapper defines it once for all)."""
    return _FINAL_LINE.sub("", code, count=1)


# -- the evaluation seed ---------------------------------------------------------------------------
# When this variable is set, a script seeds its models (and any other randomness of its own) with
# its value instead of its built-in seed; the run's split (folds.csv) never depends on it. The
# multi-seed evaluation of the final solution re-runs a script with several values.
SEED_ENV = "MLESTAR_MODEL_SEED"


def reads_seed(code: str) -> bool:
    """Whether a script looks at the evaluation seed at all (otherwise re-running it cannot vary)."""
    return SEED_ENV in code


# -- named blocks ----------------------------------------------------------------------------------
_BLOCK_RE = re.compile(
    r"^[ \t]*# === BLOCK: (?P<name>[a-z][a-z0-9_]*) ===[^\n]*\n.*?^[ \t]*# === END BLOCK: (?P=name) ===[^\n]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
_BLOCK_NAME_RE = re.compile(r"# === BLOCK: ([a-z][a-z0-9_]*) ===")


def begin_marker(name: str) -> str:
    return f"# === BLOCK: {name} ==="


def end_marker(name: str) -> str:
    return f"# === END BLOCK: {name} ==="


def wrap_block(name: str, body: str) -> str:
    """A block's text with its markers, ending in exactly one newline."""
    return f"{begin_marker(name)}\n{body.strip(chr(10))}\n{end_marker(name)}\n"


def find_blocks(code: str) -> dict[str, str]:
    """Every top-level marked block of a script (first occurrence of each name), verbatim."""
    blocks: dict[str, str] = {}
    for match in _BLOCK_RE.finditer(code):
        if match.group(0).startswith((" ", "\t")):
            continue  # a block inside a wrapped function (ablation / ensemble scripts)
        blocks.setdefault(match.group("name"), match.group(0))
    return blocks


def block_name(block: str) -> str | None:
    """The name of the (first) block a piece of code contains or belongs to."""
    match = _BLOCK_NAME_RE.search(block)
    return match.group(1) if match else None


def block_body(block: str) -> str:
    """The lines between the markers."""
    lines = block.strip("\n").split("\n")
    return "\n".join(lines[1:-1]) + "\n"


# -- ablation result lines -------------------------------------------------------------------------
_ABLATION_RE = re.compile(r"^ABLATION (?P<name>[A-Za-z0-9_]+): (?P<value>\S+)\s*$", re.MULTILINE)


def ablation_print(name_expression: str, value_expression: str) -> str:
    """Python source that prints one ablation result line."""
    return f'print(f"ABLATION {{{name_expression}}}: {{{value_expression}:.10g}}")'


def ablation_results(output: str) -> dict[str, float]:
    """``{component: score}`` from ``ABLATION <component>: <score>`` lines (finite values only)."""
    values: dict[str, float] = {}
    for match in _ABLATION_RE.finditer(output):
        value = score_from_value(match.group("value"))
        if value is not None:
            values[match.group("name")] = value
    return values


def template_globals() -> dict[str, object]:
    """What Jinja templates (expert scripts, LLM prompts) may use of the contract."""
    return {
        "SCORE_LABEL": SCORE_LABEL,
        "FINAL_FLAG": FINAL_FLAG,
        "FINAL_DIR": FINAL_DIR,
        "FOLDS_NAME": FOLDS_NAME,
        "SUBMISSION_NAME": SUBMISSION_NAME,
        "VAL_PREDICTIONS_NAME": VAL_PREDICTIONS_NAME,
        "FITTED_DIR": FITTED_DIR,
        "SEED_ENV": SEED_ENV,
        "score_print": score_print,
        "ablation_print": ablation_print,
        "final_flag_line": final_flag_line,
    }
