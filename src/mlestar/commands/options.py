"""Command-line options made from the settings model: a flag per field, its help text from the field.

``@with_settings("method", "llm")`` appends an option for every field of those groups to a command
and hands the values given on the command line to it as ``overrides`` (only those given), so a new
setting reaches the CLI by being declared once in ``mlestar.settings``.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import typer

from mlestar.settings import Group, Settings, field_meta

_SIMPLE = (int, float, str, bool, Path)


def _option_type(annotation: Any) -> type | None:
    """The plain type a flag parses into (a Literal parses as text; the settings model checks it)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in get_args(annotation) if a is not type(None)]
        return _option_type(kinds[0]) if len(kinds) == 1 else None
    if get_origin(annotation) is typing.Literal:
        return str
    return annotation if annotation in _SIMPLE else None


def settings_parameters(*groups: Group) -> list[inspect.Parameter]:
    params = []
    for name, field in Settings.model_fields.items():
        meta = field_meta(field)
        if meta.get("group") not in groups or not meta.get("flags"):
            continue
        kind = _option_type(field.annotation)
        if kind is None:
            continue
        choices = get_args(field.annotation) if get_origin(field.annotation) is typing.Literal else ()
        help_text = field.description or ""
        if choices:
            help_text += f" ({', '.join(map(str, choices))})"
        option = typer.Option(*meta["flags"], help=help_text, show_default=False)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option]
            )
        )
    return params


def with_settings(*groups: Group) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the settings of ``groups`` as options; the command receives them as ``overrides``."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.name != "overrides"
        ]
        added = settings_parameters(*groups)
        names = {p.name for p in added}

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            overrides = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, overrides={k: v for k, v in overrides.items() if v is not None})

        parameters = own + added
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        del wrapper.__wrapped__  # typer must see the new signature, not the command's
        return wrapper

    return decorate
