"""A fake of the Kaggle API calls the official ``kaggle`` client makes, on a local server.

The client posts JSON to ``<endpoint>/v1/competitions.CompetitionApiService/<Method>`` with HTTP basic
auth (username, key); a download is a redirect to the file, an upload a PUT to the URL the
StartSubmissionUpload call handed out. ``point_client_at`` makes the installed client use this
server instead of api.kaggle.com.
"""

from __future__ import annotations

import base64
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

SERVICE = "/v1/competitions.CompetitionApiService"
EVALUATION = "Submissions are evaluated on the area under the ROC curve of the predicted probabilities."


@dataclass
class FakeKaggle:
    """What the fake holds: users, competitions (name -> folder of files), and what it was sent."""

    users: dict[str, str] = field(default_factory=lambda: {"alice": "alice-secret-key"})
    competitions: dict[str, Path] = field(default_factory=dict)
    rules_accepted: set[str] = field(default_factory=set)
    public_score: str = "0.8123"
    pending_polls: int = 1  # ListSubmissions answers PENDING this many times before COMPLETE
    uploads: dict[str, bytes] = field(default_factory=dict)
    submissions: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    base_url: str = ""

    def zipped(self, name: str) -> bytes:
        """The competition as Kaggle serves it: one zip, the train file zipped once more inside."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(self.competitions[name].rglob("*")):
                if not path.is_file() or "private" in path.parts:
                    continue
                relative = str(path.relative_to(self.competitions[name]))
                if relative == "train.csv":
                    inner = io.BytesIO()
                    with zipfile.ZipFile(inner, "w") as nested:
                        nested.write(path, "train.csv")
                    bundle.writestr("train.csv.zip", inner.getvalue())
                elif relative != "description.md":  # Kaggle's description comes from the API
                    bundle.write(path, relative)
        return buffer.getvalue()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def make_kaggle_app(state: FakeKaggle) -> FastAPI:
    app = FastAPI()

    def signed_in(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        return state.users.get(user) == key

    @app.post(SERVICE + "/{method}")
    async def call(method: str, request: Request) -> Any:
        state.calls.append(method)
        body = await request.json()
        if not signed_in(request):
            return _error(401, "Unauthenticated")
        name = body.get("competitionName") or body.get("search") or ""
        if method == "ListCompetitions":
            return {
                "competitions": [
                    {
                        "ref": f"https://www.kaggle.com/competitions/{n}",
                        "title": n.replace("-", " ").title(),
                        "description": f"Predict the target of {n}.",
                        "evaluationMetric": "Area Under Receiver Operating Characteristic Curve",
                        "userHasEntered": n in state.rules_accepted,
                    }
                    for n in state.competitions
                    if name in n
                ]
            }
        if method == "StartSubmissionUpload":
            token = f"blob-{len(state.uploads) + 1}"
            return {"token": token, "createUrl": f"{state.base_url}/upload/{token}"}
        if method == "ListSubmissions":
            status = "PENDING" if state.pending_polls > 0 else "COMPLETE"
            state.pending_polls -= 1
            return {
                "submissions": [
                    {
                        "ref": s["ref"],
                        "status": status,
                        "description": s["description"],
                        **({"publicScore": state.public_score} if status == "COMPLETE" else {}),
                    }
                    for s in reversed(state.submissions)
                ]
            }
        if name not in state.competitions:
            return _error(404, "Competition not found")
        if name not in state.rules_accepted:
            return _error(
                403, "You must accept this competition's rules before you'll be able to download files."
            )
        if method == "DownloadDataFiles":
            return RedirectResponse(f"{state.base_url}/files/{name}.zip", status_code=302)
        if method == "ListCompetitionPages":
            return {
                "pages": [
                    {
                        "name": "description",
                        "content": f"Welcome to {name}. Predict whether a customer stays.",
                    },
                    {"name": "evaluation", "content": EVALUATION},
                ]
            }
        if method == "CreateSubmission":
            ref = 1000 + len(state.submissions)
            state.submissions.append(
                {
                    "ref": ref,
                    "competition": name,
                    "description": body.get("submissionDescription", ""),
                    "blob": state.uploads.get(body.get("blobFileTokens", ""), b""),
                }
            )
            return {"message": "Successfully submitted", "ref": ref}
        return _error(400, f"the fake does not answer {method}")

    @app.get("/files/{archive}")
    async def download(archive: str) -> Response:
        data = state.zipped(archive.removesuffix(".zip"))
        return Response(
            data, media_type="application/zip", headers={"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}
        )

    @app.put("/upload/{token}")
    async def upload(token: str, request: Request) -> Response:
        state.uploads[token] = await request.body()
        return Response(status_code=200)

    return app


def point_client_at(monkeypatch: Any, url: str) -> None:
    """Make the installed ``kaggle`` client talk to ``url`` instead of api.kaggle.com.

    The client takes its endpoint from a table in ``kagglesdk.kaggle_env`` when it is built; there
    is no setting for it, so the test replaces the production entry."""
    from kagglesdk import kaggle_env

    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, url)
