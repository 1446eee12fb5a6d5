"""How `preemptctl` commands reach Temporal securely: the TEMPORAL_TLS* and
TEMPORAL_API_KEY_FILE variables, read as the function and the worker read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vsphere_preemption.cli.workflow_input import InvalidInput

if TYPE_CHECKING:
    from vsphere_preemption.settings import TemporalSecurity

# For the commands' --help.
ENVIRONMENT_HELP = (
    "Temporal over TLS: TEMPORAL_TLS (true/false; on when any of the others is set), "
    "TEMPORAL_TLS_CA (CA bundle, PEM), TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (client "
    "certificate and key for mutual TLS), TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY_FILE "
    "(a file holding the API key)."
)


def security_from_environment() -> TemporalSecurity:
    """The settings from the environment, or InvalidInput naming every bad variable (never a
    file's content)."""
    from vsphere_preemption.settings import SettingsError, TemporalAccess, load

    try:
        return load(TemporalAccess).temporal_security
    except SettingsError as exc:
        raise InvalidInput("; ".join(exc.problems) or str(exc)) from None
