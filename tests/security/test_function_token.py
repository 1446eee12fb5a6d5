"""FUNCTION_TOKEN_FILE: `POST /` then needs `Authorization: Bearer <token>`; anything else is a
401 with one line of JSON, counted and logged (never with the token). Health and metrics stay
open. The app in process, its Temporal link not connected (an authorized event gets as far
as the 503 that says so)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.function.conftest import alarm_event, as_binary, function_settings
from vsphere_preemption.function.app import create_app
from vsphere_preemption.function.auth import authorized
from vsphere_preemption.settings import SettingsError

TOKEN = "fn-token-4d1c9a77-never-logged"
ALARM = "token-alarm"


def client_for(token_file: Path | None) -> httpx.AsyncClient:
    extra = {"FUNCTION_TOKEN_FILE": str(token_file)} if token_file else {}
    app = create_app(function_settings(ALARM, **extra))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://function")


def rejected(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("reason") == "unauthorized":
                return float(sample.value)
    return 0.0


async def test_only_the_bearer_token_opens_the_event_endpoint(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    headers, body = as_binary(alarm_event(ALARM, "green", "red"))
    refused = {
        "no header": {},
        "wrong token": {"Authorization": "Bearer fn-token-wrong"},
        "a prefix of it": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "another scheme": {"Authorization": f"Basic {TOKEN}"},
        "the token alone": {"Authorization": TOKEN},
    }
    async with client_for(token_file) as client:
        with capture_logs() as logs:
            for name, auth in refused.items():
                reply = await client.post("/", headers={**headers, **auth}, content=body)
                assert reply.status_code == 401, name
                assert reply.text == (
                    '{"error":"missing or wrong bearer token (Authorization: Bearer <token>)"}'
                )
                assert reply.headers["www-authenticate"] == 'Bearer realm="vsphere-preemption"'
        # Past the check: as far as Temporal, which is not connected here.
        ok = await client.post(
            "/", headers={**headers, "Authorization": f"bearer  {TOKEN}"}, content=body
        )
        assert ok.status_code == 503, ok.text
        # Probes and scrapers need no token.
        assert (await client.get("/health/liveness")).status_code == 200
        assert (await client.get("/health/readiness")).status_code == 503  # not connected
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert rejected(metrics.text) == len(refused)
    assert [entry["status"] for entry in logs] == [401] * len(refused)
    assert TOKEN not in repr(logs)


async def test_without_a_token_file_the_endpoint_is_open() -> None:
    headers, body = as_binary(alarm_event(ALARM, "green", "red"))
    async with client_for(None) as client:
        assert (await client.post("/", headers=headers, content=body)).status_code == 503


def test_the_check_itself() -> None:
    token = TOKEN.encode()
    assert authorized({}, None)
    assert authorized({"authorization": f"Bearer {TOKEN}"}, token)
    assert not authorized({"authorization": "Bearer"}, token)
    assert not authorized({"authorization": f"Bearer {TOKEN}x"}, token)
    assert not authorized({"authorization": "Bearer é"}, token)  # not ASCII: no crash


def test_an_unreadable_or_empty_token_file_stops_the_function(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SettingsError, match="FUNCTION_TOKEN_FILE is empty"):
        function_settings(ALARM, FUNCTION_TOKEN_FILE=str(empty))
    with pytest.raises(SettingsError, match="FUNCTION_TOKEN_FILE: cannot read the bearer token"):
        function_settings(ALARM, FUNCTION_TOKEN_FILE=str(tmp_path / "nowhere"))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert TOKEN not in repr(function_settings(ALARM, FUNCTION_TOKEN_FILE=str(token_file)))
