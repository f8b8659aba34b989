"""CLI commands: ``fetch`` (a Kaggle competition into a folder) and ``submit`` (a run's submission to
Kaggle). ``mlestar run kaggle:NAME`` itself lives with ``run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlestar.commands.options import with_settings
from mlestar.integrations import kaggle

console = Console(soft_wrap=True)  # paths and URLs stay whole when the output is piped


def download(name: str, dest: Path, *, force: bool = False) -> kaggle.Fetched:
    """``kaggle.fetch``, announced first when it really downloads (which is silent and may be long)."""
    if force or not kaggle.is_complete(dest.expanduser().resolve(), name):
        console.print(f"downloading kaggle:{name} into {dest} ...")
    return kaggle.fetch(name, dest, force=force)


def fetch_command(
    competition: Annotated[str, typer.Argument(help="the competition, as kaggle:NAME (NAME as in its URL)")],
    dest: Annotated[Path, typer.Argument(help="folder to download into (new, empty, or an earlier fetch)")],
    force: Annotated[bool, typer.Option("--force", help="download again although DEST holds it")] = False,
) -> None:
    """Download a Kaggle competition's files, unpacked and described, into a competition folder."""
    from mlestar.errors import MlestarError
    from mlestar.task import load_task

    fetched = download(kaggle.competition_name(competition), dest, force=force)
    if fetched.from_cache:
        console.print(f"{fetched.path} already holds kaggle:{fetched.name} (--force downloads it again)")
    else:
        console.print(f"downloaded kaggle:{fetched.name} to {fetched.path}: {len(fetched.files)} files")
    for note in fetched.notes:
        console.print(f"[yellow]note:[/] {note}")
    try:
        task = load_task(fetched.path)
    except MlestarError as exc:  # the download is there; what intake makes of it is `mlestar profile`'s job
        console.print(f"[yellow]note:[/] intake cannot read it as a competition yet: {exc}")
        return
    targets = ", ".join(task.target_columns)
    console.print(f"target {targets}, metric {task.metric} (from {task.metric_source})")
    console.print(f"run it with: mlestar run {fetched.path}")


@with_settings("storage")
def submit_command(
    run_id: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    competition: Annotated[
        str | None,
        typer.Option("--kaggle", help="Kaggle competition (default: the one the run was downloaded from)"),
    ] = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="the submission's description")
    ] = None,
    wait: Annotated[float, typer.Option("--wait", help="seconds to wait for the public score", min=0)] = 60.0,
    *,
    overrides: dict[str, Any],
) -> None:
    """Upload a run's submission.csv to a Kaggle competition and print its public score."""
    from mlestar.core.contract import SUBMISSION_NAME
    from mlestar.errors import ConfigError, KaggleError
    from mlestar.settings import Settings
    from mlestar.store import open_run

    with open_run(Settings.load(**overrides).runs_dir, run_id) as store:
        path = store.run_dir / SUBMISSION_NAME
        source = Path(str(store.get_meta("competition_path", "")))
        summary = store.summary()
    if not path.is_file():
        raise KaggleError(f"run {summary.run_id} has no {SUBMISSION_NAME} yet")
    if competition is None:
        if not kaggle.is_complete(source, source.name):
            raise ConfigError(f"run {summary.run_id} was not made from a Kaggle download: pass --kaggle NAME")
        competition = source.name
    name = kaggle.competition_name(competition)
    best = summary.best_score
    scored = f": validation {summary.metric} {best:.6g}" if best is not None else ""
    text = message or f"mlestar run {summary.run_id}{scored}"
    result = kaggle.submit(name, path, text, wait_s=wait)
    if result.status == "error":
        raise KaggleError(f"Kaggle could not score the submission to {name}: {result.error}")
    console.print(f"submitted {path} to {name}" + (f" (ref {result.ref})" if result.ref else ""))
    if result.status == "complete":
        console.print(f"public score: {result.public_score or 'not published for this competition'}")
    else:
        console.print(f"Kaggle is still scoring it after {wait:.0f}s: see {result.url}")


def register(app: typer.Typer) -> None:
    app.command("fetch")(fetch_command)
    app.command("submit")(submit_command)
