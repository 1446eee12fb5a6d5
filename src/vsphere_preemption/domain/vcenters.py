"""Which vCenter an event comes from: the host of its CloudEvent `source`.

VEBA gives the vCenter's SDK URL as the `source` of every event it forwards
(`https://vcsa.example.com/sdk`). One function serving several vCenters tells them apart by the
host of that URL, lower-cased, with its port when one is given and it is not HTTPS's 443:
`https://VCSA.example.com/sdk`, `https://vcsa.example.com:443/sdk/` and `vcsa.example.com` all
read `vcsa.example.com`; `https://127.0.0.1:8989/sdk` reads `127.0.0.1:8989`. The same reading
applies to the keys of the function's `VCENTER_TASKQUEUES`, so a key may be a URL or a host.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# What `vcenter_host` returns: a DNS name or IPv4 address (lower case), or an IPv6 address in
# brackets, then an optional port. No slash, so it can be one segment of a workflow ID.
_HOST = re.compile(r"(?:[a-z0-9_][a-z0-9_.-]*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
HTTPS_PORT = 443


def vcenter_host(text: str) -> str:
    """The vCenter host `text` (a source URL, or a host with or without a port) names, in the
    form above; "" when it names none."""
    value = text.strip()
    if "://" not in value:
        value = "//" + value  # a bare host: urlsplit reads a netloc only after "//"
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number or out of range, a bad IPv6 literal
        return ""
    if not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    found = host if port is None or port == HTTPS_PORT else f"{host}:{port}"
    return found if _HOST.fullmatch(found) else ""


def is_vcenter_host(text: str) -> bool:
    """Whether `text` is a host as `vcenter_host` writes it."""
    return _HOST.fullmatch(text) is not None


def reads_as_vcenter_host(segment: str) -> bool:
    """Whether one segment of a workflow ID is a vCenter host as `vcenter_host` writes it and
    unlike a word of an alarm name: it has a dot (a DNS name, an IPv4 address) or a port, or is
    an IPv6 address."""
    return is_vcenter_host(segment) and ("." in segment or ":" in segment)


def vcenter_task_queue(vcenter: str, base_queue: str, routes: dict[str, str]) -> str:
    """The task queue of the worker for `vcenter` (preemptctl's --vcenter): its entry in the
    function's routes (VCENTER_TASKQUEUES, keyed by host) when `vcenter` is a host there,
    else the queue the chart gives a vCenter without one of its own, `<base queue>-<name>`."""
    host = vcenter_host(vcenter)
    if host and host in routes:
        return routes[host]
    return f"{base_queue}-{vcenter.strip()}"
