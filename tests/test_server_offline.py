"""The UI and the report reference nothing outside the server: no CDN, no web fonts, no remote scripts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from mlestar.server import ServerOptions, create_app
from mlestar.server.app import STATIC_DIR

sys.path.insert(0, str(Path(__file__).parent))  # no tests/__init__.py: helpers import by name
from test_server_support import RUN_ID, build_finished_run

EXTERNAL = re.compile(
    r"https?://|(?:src|href|action)\s*=\s*[\"']?//|url\(\s*[\"']?//|//cdn|@import", re.IGNORECASE
)
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*"(/[^"]*)"|from\s+"(\./[^"]+)"|import\s+"(\./[^"]+)\"""")


def test_static_assets_have_no_external_reference() -> None:
    files = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file())
    assert {p.suffix for p in files} >= {".html", ".js", ".css"}
    for path in files:
        match = EXTERNAL.search(path.read_text())
        assert match is None, f"{path.name}: {match.group(0) if match else ''}"


def test_served_pages_load_only_from_the_server(tmp_path: Path) -> None:
    build_finished_run(tmp_path)
    client = TestClient(create_app(ServerOptions(runs_dir=tmp_path)), base_url="http://127.0.0.1")
    seen: set[str] = set()
    queue = ["/"]
    while queue:  # follow every reference of the page and of its modules
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        assert not EXTERNAL.search(response.text), url
        base = url.rsplit("/", 1)[0]
        for absolute, relative, bare in REFERENCE.findall(response.text):
            target = absolute or f"{base}/{(relative or bare)[2:]}"
            if not target.startswith("data:"):
                queue.append(target)
    assert {
        "/static/app.js",
        "/static/api.js",
        "/static/run.js",
        "/static/runs.js",
        "/static/dom.js",
        "/static/style.css",
    } <= seen

    client.post(f"/api/runs/{RUN_ID}/report")
    for name in ("report.html", "report.md"):
        assert not EXTERNAL.search(client.get(f"/api/runs/{RUN_ID}/files/{name}").text), name
