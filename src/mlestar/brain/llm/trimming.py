"""Shortening what goes into prompts without losing what matters.

A competition description is cut by section: the Evaluation and Submission sections are the last
to go, timelines, prizes and citations the first. A script's output keeps its result lines (the
score line, ablation lines, "Baseline: ...") wherever they are, then as much of its end and start
as fits.
"""

from __future__ import annotations

import re

from mlestar.core.contract import SCORE_LABEL

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)

# Higher first: what a model needs most to write a solution that scores.
_PRIORITIES: tuple[tuple[int, tuple[str, ...]], ...] = (
    (5, ("evaluation", "metric", "scoring", "score")),
    (4, ("submission", "format", "output")),
    (3, ("data", "dataset", "file", "column", "field", "feature", "input")),
    (2, ("description", "overview", "task", "goal", "background", "problem", "introduction", "summary")),
    (
        0,
        (
            "timeline",
            "prize",
            "citation",
            "acknowledg",
            "rule",
            "kernel",
            "code requirement",
            "faq",
            "leaderboard",
            "about",
            "license",
            "contact",
            "sponsor",
            "host",
        ),
    ),
)
_DEFAULT_PRIORITY = 1


def section_priority(heading: str) -> int:
    lowered = heading.lower()
    for priority, words in _PRIORITIES:
        if any(word in lowered for word in words):
            return priority
    return _DEFAULT_PRIORITY


def _sections(text: str) -> list[tuple[str, str, int]]:
    """(heading line, body, priority); the text before the first heading is an overview."""
    matches = list(_HEADING.finditer(text))
    if not matches:
        return [("", text, 2)]
    sections = []
    if text[: matches[0].start()].strip():
        sections.append(("", text[: matches[0].start()], 2))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end]
        # A top-level title with no body of its own is kept with what follows.
        priority = 6 if len(match.group(1)) == 1 and not body.strip() else section_priority(match.group(2))
        sections.append((match.group(0), body, priority))
    return sections


def trim_description(text: str, limit: int) -> str:
    """``text`` in at most about ``limit`` characters, dropping the least useful sections first."""
    text = text.strip()
    if len(text) <= limit:
        return text
    sections = _sections(text)
    kept = list(range(len(sections)))
    dropped: list[str] = []
    # Drop whole sections of little use (least useful and, among equals, latest first); what the
    # model needs to score (evaluation, submission, data) is shortened instead.
    for index in sorted(kept, key=lambda i: (sections[i][2], -i)):
        if _size(sections, kept) <= limit or sections[index][2] >= 3:
            break
        kept.remove(index)
        heading = sections[index][0].lstrip("#").strip()
        if heading:
            dropped.append(heading)
    over = max(0, _size(sections, kept) - limit)
    total = max(1, sum(len(sections[i][1]) for i in kept))
    parts = []
    for index in kept:
        heading, body, _ = sections[index]
        if over > 0 and len(body) > 200:
            cut = min(len(body) - 100, int(over * len(body) / total) + 1)
            body = body[: len(body) - cut].rstrip() + "\n[... cut ...]\n\n"
        parts.append(heading + body)
    note = f"\n\n[Sections left out to save space: {', '.join(dropped)}]" if dropped else ""
    return "".join(parts).strip() + note


def _size(sections: list[tuple[str, str, int]], kept: list[int]) -> int:
    return sum(len(sections[i][0]) + len(sections[i][1]) for i in kept)


_RESULT_LINE = re.compile(
    rf"^.*(?:{re.escape(SCORE_LABEL)}|\bablation\b|\bbaseline\b|\bvariant\b).*$", re.I | re.M
)


def trim_output(text: str, limit: int) -> str:
    """A script's output in about ``limit`` characters: every result line, then its end and start."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    results = [i for i, line in enumerate(lines) if _RESULT_LINE.match(line)]
    keep: set[int] = set()
    used = 0
    for i in results:
        if used + len(lines[i]) + 1 > limit // 2:
            break
        keep.add(i)
        used += len(lines[i]) + 1
    # The end holds the traceback or the last results; the start the configuration echo.
    room = limit - used
    for order, share in ((range(len(lines) - 1, -1, -1), 2 / 3), (range(len(lines)), 1.0)):
        budget = int(room * share) if share < 1 else room
        for i in order:
            if i in keep:
                continue
            if len(lines[i]) + 1 > budget:
                break
            keep.add(i)
            budget -= len(lines[i]) + 1
            room -= len(lines[i]) + 1
    out, gap = [], 0
    for i, line in enumerate(lines):
        if i in keep:
            if gap:
                out.append(f"[... {gap} lines left out ...]")
                gap = 0
            out.append(line)
        else:
            gap += 1
    if gap:
        out.append(f"[... {gap} lines left out ...]")
    return "\n".join(out)


def clip(text: str, limit: int) -> str:
    """The start and end of ``text`` in about ``limit`` characters."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"
