"""Access control: the token beyond localhost, and the browser guards on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlestar.errors import ConfigError
from mlestar.server import ServerOptions, create_app
from mlestar.server.options import is_loopback

sys.path.insert(0, str(Path(__file__).parent))  # no tests/__init__.py: helpers import by name
from test_server_support import RUN_ID, build_finished_run, free_port

TOKEN = "s3cret-token-for-tests"


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    build_finished_run(tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture()
def exposed(runs_dir: Path) -> TestClient:
    """The app as `mlestar serve --host 0.0.0.0` builds it, with MLESTAR_TOKEN set."""
    settings = ServerOptions(runs_dir=runs_dir, host="0.0.0.0", token=TOKEN, python="/bin/false")
    return TestClient(create_app(settings), base_url="http://192.0.2.10:8000")


def concrete(path: str) -> str:
    return path.replace("{run_id}", RUN_ID).replace("{node_id}", "1").replace("{name}", "submission.csv")


def api_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every documented route, plus the schema itself."""
    paths = client.app.openapi()["paths"]
    routes = [(method.upper(), path) for path, ops in paths.items() for method in ops]
    assert all(path.startswith("/api/") for _, path in routes)
    return [*routes, ("GET", "/api/openapi.json")]


def test_every_api_route_needs_the_token(exposed: TestClient) -> None:
    routes = api_routes(exposed)
    assert len(routes) >= 17  # all of them, including the OpenAPI schema
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
            response = exposed.request(
                method, concrete(path), headers=headers, json={} if method == "POST" else None
            )
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
        assert exposed.request(method, concrete(path) + "?token=nope").status_code == 401


def test_token_in_header_or_query(exposed: TestClient) -> None:
    assert exposed.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert exposed.get("/api/runs", params={"token": TOKEN}).json()[0]["run_id"] == RUN_ID
    assert exposed.get("/api/openapi.json", params={"token": TOKEN}).status_code == 200
    download = exposed.get(f"/api/runs/{RUN_ID}/files/submission.csv", params={"token": TOKEN})
    assert download.status_code == 200 and download.text.startswith("customer_id")


def test_event_stream_checks_the_token(exposed: TestClient) -> None:
    url = f"/api/runs/{RUN_ID}/events/stream"
    assert exposed.get(url).status_code == 401
    assert exposed.get(url, params={"token": "wrong"}).status_code == 401
    response = exposed.get(url, params={"token": TOKEN, "after": 30})
    assert response.status_code == 200 and "event: end" in response.text


def test_page_and_assets_load_without_token_but_hold_no_data(exposed: TestClient) -> None:
    page = exposed.get("/")
    assert page.status_code == 200 and "<main" in page.text and RUN_ID not in page.text
    assert exposed.get("/static/app.js").status_code == 200


def test_exposed_server_refuses_to_start_without_token(runs_dir: Path) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.5", "my-host.example"):
        with pytest.raises(ConfigError, match="MLESTAR_TOKEN"):
            create_app(ServerOptions(runs_dir=runs_dir, host=host))
    with pytest.raises(ConfigError, match="too short"):
        create_app(ServerOptions(runs_dir=runs_dir, host="0.0.0.0", token="abc"))
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        create_app(ServerOptions(runs_dir=runs_dir, host=host))


def test_cli_refuses_exposed_address_without_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLESTAR_TOKEN"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlestar",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "1",
            "--runs-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MLESTAR_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_local_server_without_token_is_open_to_loopback_only(runs_dir: Path) -> None:
    app = create_app(ServerOptions(runs_dir=runs_dir))
    local = TestClient(app, base_url="http://127.0.0.1:8000")
    assert local.get("/api/runs").status_code == 200
    assert TestClient(app, base_url="http://localhost:8000").get("/api/runs").status_code == 200
    # DNS rebinding: a hostile name resolving to 127.0.0.1 carries its own Host header.
    assert TestClient(app, base_url="http://evil.example:8000").get("/api/runs").status_code == 403


def test_cross_site_writes_are_refused(runs_dir: Path) -> None:
    local = TestClient(create_app(ServerOptions(runs_dir=runs_dir)), base_url="http://127.0.0.1:8000")
    stop = f"/api/runs/{RUN_ID}/stop"
    assert local.post(stop, headers={"Origin": "http://evil.example"}).status_code == 403
    assert local.post(stop, headers={"Origin": "null"}).status_code == 403
    # Same origin reaches the route (which then says the finished run cannot be stopped).
    assert local.post(stop, headers={"Origin": "http://127.0.0.1:8000"}).status_code == 409
    assert local.get("/api/runs", headers={"Origin": "http://evil.example"}).status_code == 200


def test_security_headers(runs_dir: Path) -> None:
    local = TestClient(create_app(ServerOptions(runs_dir=runs_dir)), base_url="http://127.0.0.1:8000")
    headers = local.get("/").headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"


def test_a_token_set_on_localhost_is_enforced(runs_dir: Path) -> None:
    app = create_app(ServerOptions(runs_dir=runs_dir, token=TOKEN))
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_serve_command_serves_with_the_token_from_the_environment(runs_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "MLESTAR_TOKEN": TOKEN}
    command = [sys.executable, "-m", "mlestar", "serve", "--port", str(port), "--runs-dir", str(runs_dir)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/api/runs"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert response.status_code == 401
        listed = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
        assert [r["run_id"] for r in listed] == [RUN_ID]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/" in output and TOKEN not in output  # the token is never printed
