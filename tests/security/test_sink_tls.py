"""The worker's events to an https:// replyTo: TLS verified, never off; SINK_CA_BUNDLE adds
the CAs to trust. nginx terminates TLS in front of the real EventSink; the activity is called
directly with the client the worker builds from its settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from tests.security.tls_kit import Nginx, Pki, tls_server
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.settings import SettingsError, WorkerSettings, load
from vsphere_preemption.temporal.activities import PreemptionActivities
from vsphere_preemption.temporal.contracts import PreemptionPolicy, SendEventInput
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.wire import PREEMPTED_EVENT_TYPE
from vsphere_preemption.worker import sink_http_client

BASE = {"TEMPORAL_URL": "127.0.0.1:7233", "VCENTER_URL": "https://127.0.0.1:9/sdk"}


@pytest.fixture
def https_sink(pki: Pki, tmp_path: Path) -> Iterator[tuple[EventSink, str]]:
    """The sink, and its https:// URL through nginx (the test CA's server certificate)."""
    with EventSink() as sink:
        servers = f"""
  server {{
    {tls_server("{port0}", pki)}
    location / {{ proxy_pass {sink.url}; }}
  }}
"""
        with Nginx(tmp_path / "nginx", servers, 1) as nginx:
            yield sink, f"https://127.0.0.1:{nginx.ports[0]}/"


def send(env: dict[str, str], url: str) -> None:
    settings = load(WorkerSettings, BASE | env)
    config = VCenterConfig(url="https://127.0.0.1:9/sdk", username="u", password="p")
    # The vCenter client is never used by this activity, so never connected.
    with VSphereClient(config) as vcenter, sink_http_client(settings) as http:
        activities = PreemptionActivities(vcenter, PreemptionPolicy(), "src", http)
        activities.send_preempted_event(
            SendEventInput(reply_to=url, event_id="tls-1", data_json='{"preempted":true}')
        )


def test_an_untrusted_sink_certificate_fails_loudly_and_the_bundle_makes_it_work(
    https_sink: tuple[EventSink, str], pki: Pki
) -> None:
    sink, url = https_sink
    with pytest.raises(ApplicationError) as failed:
        send({}, url)
    message = str(failed.value)
    assert failed.value.type == "SinkUnreachable" and not failed.value.non_retryable
    assert message.startswith(f"SinkUnreachable: sending {PREEMPTED_EVENT_TYPE} to {url} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert message.endswith("(TLS: the sink's certificate is not trusted; SINK_CA_BUNDLE adds CAs)")
    assert sink.events == []
    # Another CA's bundle does not help; the sink's CA does.
    with pytest.raises(ApplicationError, match="CERTIFICATE_VERIFY_FAILED"):
        send({"SINK_CA_BUNDLE": str(pki.otherca_crt)}, url)
    send({"SINK_CA_BUNDLE": str(pki.ca_crt)}, url)
    (event,) = sink.events
    assert event.id == "tls-1"


def test_a_bundle_that_cannot_be_used_stops_the_worker_at_start(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    for path, reason in (
        (tmp_path / "nowhere.pem", f"cannot read {tmp_path / 'nowhere.pem'} (No such file"),
        (junk, f"{junk} holds no PEM certificate"),
    ):
        with pytest.raises(SettingsError, match="SINK_CA_BUNDLE") as err:
            load(WorkerSettings, BASE | {"SINK_CA_BUNDLE": str(path)})
        assert reason in str(err.value)
