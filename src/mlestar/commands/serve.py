"""CLI commands: serve (web UI + REST API) and report."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlestar.commands.options import with_settings
from mlestar.errors import ConfigError
from mlestar.settings import Settings


@with_settings("server", "storage")
def serve_command(*, overrides: dict[str, Any]) -> None:
    """Serve the web UI and REST API: watch, steer and inspect runs live."""
    try:
        import uvicorn

        from mlestar.server import ServerOptions, create_app
    except ImportError as exc:
        raise ConfigError(
            f"the server needs its extra: pip install 'mlestar[server]' ({exc.name} missing)"
        ) from None

    options = ServerOptions.from_settings(Settings.load(**overrides))
    app = create_app(options)  # refuses an exposed address without a token
    host, port = options.host, options.port
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    typer.echo(f"mlestar UI for runs in {options.runs_dir}")
    if options.token:
        typer.echo(f"open {url}?token=<MLESTAR_TOKEN>  (API: Authorization: Bearer <token>)")
    else:
        typer.echo(f"open {url}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@with_settings("storage")
def report_command(
    run: Annotated[str, typer.Argument(help="run id (or unique prefix) or run folder")],
    *,
    overrides: dict[str, Any],
) -> None:
    """Write report.html and report.md for a run (also done at the end of every run)."""
    from mlestar.report import write_report
    from mlestar.store import open_run

    with open_run(Settings.load(**overrides).runs_dir, run) as store:
        run_dir = store.run_dir
    html, md = write_report(run_dir)
    typer.echo(f"report: {html}\nmarkdown: {md}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("report")(report_command)
