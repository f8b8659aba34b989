"""The ``mlestar`` command line: a thin Typer layer over the Python API.

Each group of commands lives in ``mlestar.commands.<name>`` and exposes ``register(app)``. Errors
the user can fix (``MlestarError``) print as one line and exit non-zero, never as a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from mlestar.errors import MlestarError

app = typer.Typer(
    name="mlestar",
    help="MLE-STAR machine-learning engineering agent: writes, runs, refines and ensembles solutions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

COMMAND_MODULES = ("task", "run", "llm", "serve", "bench", "kaggle", "predict")


_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"mlestar.commands.{name}")
        module.register(app)


def _is_a(exc: BaseException, class_name: str) -> bool:
    """Whether ``exc`` is a click ``class_name``: recent Typer vendors click (``typer._click``), older
    Typer uses the click package, so the class is recognised by name rather than by import."""
    return any(cls.__name__ == class_name and "click" in cls.__module__ for cls in type(exc).__mro__)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except MlestarError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like arrive here in non-standalone mode
        if _is_a(exc, "ClickException"):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if _is_a(exc, "Abort"):
            err_console.print("[yellow]aborted[/]")
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
