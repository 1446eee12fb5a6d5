"""How temporal/client.py's `translating` words a failed Temporal call: one line, retryable or
not, the original kept as the cause. No server: the SDK's errors are built here."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from vsphere_preemption.temporal.client import (
    TemporalError,
    TemporalRejected,
    TemporalUnavailable,
    WorkflowNotFound,
    translating,
)


def rpc(status: RPCStatusCode, message: str = "the server's words") -> RPCError:
    return RPCError(message, status, b"")


def failure(
    error: Exception,
    doing: str = "cannot cancel x",
    *,
    query: bool = False,
    hint: str = "",
    not_found: str | None = None,
) -> TemporalError:
    how = translating(doing, query=query, hint=hint, not_found=not_found)
    with pytest.raises(TemporalError) as caught, how:
        raise error
    assert caught.value.__cause__ is error
    return caught.value


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (RPCStatusCode.UNAVAILABLE, TemporalUnavailable),
        (RPCStatusCode.DEADLINE_EXCEEDED, TemporalUnavailable),
        (RPCStatusCode.RESOURCE_EXHAUSTED, TemporalUnavailable),
        (RPCStatusCode.INVALID_ARGUMENT, TemporalRejected),
        (RPCStatusCode.PERMISSION_DENIED, TemporalRejected),
        (RPCStatusCode.NOT_FOUND, WorkflowNotFound),
    ],
)
def test_a_call_is_classified_by_its_status(status: RPCStatusCode, kind: type) -> None:
    error = failure(rpc(status))
    assert type(error) is kind
    assert str(error) == f"cannot cancel x: Temporal {status.name}: the server's words"


def test_a_failure_that_is_not_the_servers_answer_is_worth_retrying() -> None:
    error = failure(ConnectionResetError("reset\nby peer"), "signal-with-start")
    assert type(error) is TemporalUnavailable
    assert str(error) == "signal-with-start: reset by peer"


def test_not_found_worded_by_the_caller_keeps_the_servers_words() -> None:
    error = failure(rpc(RPCStatusCode.NOT_FOUND, "no such run"), not_found="no workflow 'w'")
    assert isinstance(error, WorkflowNotFound) and isinstance(error, TemporalRejected)
    assert str(error) == "no workflow 'w' (no such run)"


@pytest.mark.parametrize(
    ("raised", "reason"),
    [
        (rpc(RPCStatusCode.UNAVAILABLE, "no poller"), "no poller"),
        (rpc(RPCStatusCode.DEADLINE_EXCEEDED), "no answer within 5s"),
        (RuntimeError("gone"), "gone"),
    ],
)
def test_a_query_that_is_not_answered_is_rejected(raised: Exception, reason: str) -> None:
    error = failure(raised, "w did not answer", query=True, hint=" (a worker?)")
    assert type(error) is TemporalRejected
    assert str(error) == f"w did not answer: {reason} (a worker?)"


def test_our_own_errors_pass_as_they_are() -> None:
    ours = TemporalUnavailable("already said")
    with pytest.raises(TemporalUnavailable) as caught, translating("cannot list workflows"):
        raise ours
    assert caught.value is ours
