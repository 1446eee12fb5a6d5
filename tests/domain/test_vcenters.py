from __future__ import annotations

import pytest

from vsphere_preemption.domain.vcenters import (
    reads_as_vcenter_host,
    vcenter_host,
    vcenter_task_queue,
)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("https://vcsa.example.com/sdk", "vcsa.example.com"),
        ("https://VCSA.Example.com/sdk/", "vcsa.example.com"),
        ("https://vcsa.example.com:443/sdk", "vcsa.example.com"),
        ("vcsa.example.com", "vcsa.example.com"),
        (" VCSA.example.com:443 ", "vcsa.example.com"),
        ("https://127.0.0.1:8989/sdk", "127.0.0.1:8989"),
        ("127.0.0.1:8989", "127.0.0.1:8989"),
        ("https://10.161.164.224/sdk", "10.161.164.224"),  # tests/fixtures/01_*
        ("https://[::1]:8989/sdk", "[::1]:8989"),
        ("https://user@vcsa.example.com/sdk", "vcsa.example.com"),
    ],
)
def test_the_host_of_a_source(text: str, host: str) -> None:
    assert vcenter_host(text) == host
    assert vcenter_host(host) == host  # what it returns reads as itself


@pytest.mark.parametrize(
    "text", ["", "   ", "/apis/v1/namespaces/x", "https://vcsa:notaport/sdk", "https:///sdk", "a b"]
)
def test_no_host(text: str) -> None:
    assert vcenter_host(text) == ""


def test_what_reads_as_a_host_in_a_workflow_id() -> None:
    assert reads_as_vcenter_host("vcsa.example.com")
    assert reads_as_vcenter_host("127.0.0.1:8989")
    assert reads_as_vcenter_host("vcsa:8443")
    assert not reads_as_vcenter_host("vcsa")  # a word of an alarm name, as well
    assert not reads_as_vcenter_host("memory high")
    assert not reads_as_vcenter_host("VCSA.example.com")  # not as vcenter_host writes it


def test_a_vcenters_task_queue_is_its_route_or_the_charts_default() -> None:
    routes = {"vcsa-1.example.com": "queue-a"}
    assert vcenter_task_queue("https://vcsa-1.example.com/sdk", "vp", routes) == "queue-a"
    assert vcenter_task_queue("vcsa-1.example.com", "vp", routes) == "queue-a"
    assert vcenter_task_queue("lab", "vp", routes) == "vp-lab"
