"""The REST API under ``/api``: every route requires the access token when one is configured."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, UploadFile, status
from fastapi.responses import FileResponse, Response, StreamingResponse

from mlestar.core.events import Event
from mlestar.report.data import Progress
from mlestar.report.svg import score_chart
from mlestar.server.auth import require_token
from mlestar.server.control import RunControl
from mlestar.server.paths import DOWNLOADS
from mlestar.server.runs import RunService, not_found
from mlestar.server.schemas import (
    AblationList,
    ControlResult,
    LLMCalls,
    NodeList,
    Problem,
    RunDetail,
    RunItem,
    ScriptDetail,
    StartedRun,
    StartRun,
)
from mlestar.server.stream import follow

ERRORS = {
    401: {"model": Problem, "description": "missing or wrong access token"},
    404: {"model": Problem, "description": "no such run, script or file"},
}
# Reports are our own HTML, but served from the API origin they get no rights at all.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"

router = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=ERRORS)
RunId = Annotated[str, "run id"]
MAX_SEQ = 2**63 - 1  # SQLite's largest integer: a larger ``after`` cannot even be compared


def service(request: Request) -> RunService:
    return request.app.state.service  # type: ignore[no-any-return]


def control(request: Request) -> RunControl:
    return request.app.state.control  # type: ignore[no-any-return]


Service = Annotated[RunService, Depends(service)]
Controls = Annotated[RunControl, Depends(control)]


@router.get("/runs", response_model=list[RunItem], tags=["runs"], summary="List runs, newest first")
def list_runs(svc: Service) -> list[RunItem]:
    return svc.list()


@router.post(
    "/runs",
    response_model=StartedRun,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["runs"],
    summary="Start a run on a competition folder (spawns `mlestar run` in the background)",
    responses={400: {"model": Problem}, 409: {"model": Problem}},
)
def start_run(body: StartRun, ctl: Controls) -> StartedRun:
    return ctl.start(body)


@router.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"], summary="A run's status and metadata")
def get_run(run_id: RunId, svc: Service) -> RunDetail:
    return svc.detail(run_id)


@router.post(
    "/runs/{run_id}/pause",
    response_model=ControlResult,
    tags=["control"],
    responses={409: {"model": Problem}},
    summary="Pause after the current step",
)
def pause_run(run_id: RunId, ctl: Controls) -> ControlResult:
    return ctl.pause(run_id)


@router.post(
    "/runs/{run_id}/resume",
    response_model=ControlResult,
    tags=["control"],
    responses={409: {"model": Problem}},
    summary="Resume a paused run, or continue a stopped/crashed one in a new process",
)
def resume_run(run_id: RunId, ctl: Controls) -> ControlResult:
    return ctl.resume(run_id)


@router.post(
    "/runs/{run_id}/stop",
    response_model=ControlResult,
    tags=["control"],
    responses={409: {"model": Problem}},
    summary="Stop gracefully (resumable)",
)
def stop_run(run_id: RunId, ctl: Controls) -> ControlResult:
    return ctl.stop(run_id)


@router.get(
    "/runs/{run_id}/nodes",
    response_model=NodeList,
    tags=["scripts"],
    summary="All scripts as a solution tree (depth-first, each under its first parent)",
)
def list_nodes(run_id: RunId, svc: Service) -> NodeList:
    return svc.nodes(run_id)


@router.get(
    "/runs/{run_id}/nodes/{node_id}",
    response_model=ScriptDetail,
    tags=["scripts"],
    summary="One script: code, stdout, stderr and a diff against its parent",
)
def get_node(
    run_id: RunId,
    node_id: int,
    svc: Service,
    against: Annotated[
        int | None, Query(description="compare with this script instead of the parent")
    ] = None,
) -> ScriptDetail:
    return svc.script(run_id, node_id, against)


@router.get(
    "/runs/{run_id}/events",
    response_model=list[Event],
    tags=["events"],
    summary="Events after a sequence number",
)
def list_events(
    run_id: RunId,
    svc: Service,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> list[Event]:
    return svc.events(run_id, after, limit)


@router.get(
    "/runs/{run_id}/events/stream",
    tags=["events"],
    summary="Server-Sent Events: history after `after`, then live events until the run ends",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    run_id: RunId,
    request: Request,
    svc: Service,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    if svc.folder(run_id) is None and not svc.launcher.alive(run_id):
        raise not_found(f"no run {run_id!r}")
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    return StreamingResponse(
        follow(svc, run_id, after, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/runs/{run_id}/progress",
    response_model=Progress,
    tags=["scores"],
    summary="Scores over time and the best-so-far steps",
)
def get_progress(run_id: RunId, svc: Service) -> Progress:
    return svc.progress(run_id)


@router.get(
    "/runs/{run_id}/chart.svg",
    tags=["scores"],
    summary="The score chart as SVG",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
def get_chart(run_id: RunId, svc: Service) -> Response:
    return Response(score_chart(svc.progress(run_id), standalone=True), media_type="image/svg+xml")


@router.get(
    "/runs/{run_id}/ablations",
    response_model=AblationList,
    tags=["scores"],
    summary="Ablation findings and leakage / data-usage checks",
)
def get_ablations(run_id: RunId, svc: Service) -> AblationList:
    return svc.ablations(run_id)


@router.get(
    "/runs/{run_id}/llm-calls",
    response_model=LLMCalls,
    tags=["llm"],
    summary="LLM calls with tokens and cost, and their totals by agent",
)
def get_llm_calls(run_id: RunId, svc: Service) -> LLMCalls:
    return svc.llm_calls(run_id)


@router.get(
    "/runs/{run_id}/files/{name}",
    tags=["files"],
    response_class=FileResponse,
    summary=f"Download one of: {', '.join(DOWNLOADS)}",
)
def download(
    run_id: RunId,
    name: str,
    svc: Service,
    inline: Annotated[bool, Query(description="show in the browser instead of downloading")] = False,
) -> FileResponse:
    path = svc.download(run_id, name)
    response = FileResponse(
        path,
        media_type=DOWNLOADS[name],
        filename=f"{run_id}-{name}",
        content_disposition_type="inline" if inline else "attachment",
    )
    if name == "report.html":
        response.headers["content-security-policy"] = REPORT_POLICY
    return response


@router.post(
    "/runs/{run_id}/predict",
    tags=["files"],
    summary="Predict new rows (a CSV upload with the test file's columns) with the run's final solution",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, 400: {"model": Problem}, 503: {"model": Problem}},
)
def predict(run_id: RunId, svc: Service, file: UploadFile) -> Response:
    content, loaded = svc.predict(run_id, file)
    return Response(
        content,
        media_type="text/csv",
        headers={
            "content-disposition": f'attachment; filename="{run_id}-predictions.csv"',
            "x-mlestar-models": "loaded" if loaded else "retrained",
        },
    )


@router.post("/runs/{run_id}/report", tags=["files"], summary="Write report.html and report.md now")
def make_report(run_id: RunId, svc: Service) -> dict[str, str]:
    html, md = svc.write_report(run_id)
    return {"html": html.name, "md": md.name}
