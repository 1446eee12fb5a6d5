"""The flags of `preemptctl workflow`, where they may be written, and their defaults (as Go's)."""

from __future__ import annotations

import argparse

import pytest

from vsphere_preemption.cli.main import build_parser, main
from vsphere_preemption.cli.temporal_access import Options, workflow_id_from_args
from vsphere_preemption.temporal.client import connect_failure_reason


def _parse(*argv: str) -> tuple[argparse.Namespace, Options]:
    args = build_parser().parse_args(["workflow", *argv])
    return args, Options.from_args(args)


def test_defaults_are_the_go_clis() -> None:
    args, options = _parse("run")
    assert (options.server, options.namespace, options.queue) == (
        "localhost:7233",
        "vsphere-preemption",
        "vsphere-preemption",
    )
    assert (options.verbose, options.json) == (False, False)
    assert (args.tag, args.criticality, args.event, args.reply_to) == ("preemptible", "LOW", "", "")


@pytest.mark.parametrize("verb", ["status", "cancel"])
def test_status_and_cancel_address_the_cli_workflow_by_default(verb: str) -> None:
    args, _ = _parse(verb)
    assert (workflow_id_from_args(args), args.run_id) == ("preempctl-run", "")
    args, _ = _parse(verb, "-r", "run-1", "--workflow-id", "cluster-cpu-above-80")
    assert (workflow_id_from_args(args), args.run_id) == ("cluster-cpu-above-80", "run-1")


@pytest.mark.parametrize("verb", ["status", "cancel"])
@pytest.mark.parametrize(
    ("argv", "workflow_id"),
    [
        (("--alarm", "cpu", "--entity", "domain-c7"), "cpu/domain-c7"),
        (("--alarm", "cpu", "--entity", "HostSystem:host-21"), "cpu/host-21"),
        (("--alarm", "cpu"), "cpu"),  # a request without entity: the alarm's own ID
        (("--alarm", "cpu", "--go-id"), "cpu"),
        (("--alarm", "cpu", "--id-mode", "alarm"), "cpu"),
        (("--alarm", "cpu", "--id-mode", "entity", "--entity", "domain-c8"), "cpu/domain-c8"),
    ],
)
def test_status_and_cancel_address_an_alarm_and_entity(
    verb: str, argv: tuple[str, ...], workflow_id: str
) -> None:
    args, _ = _parse(verb, *argv)
    assert workflow_id_from_args(args) == workflow_id


def test_go_id_and_id_mode_exclude_each_other() -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("status", "--alarm", "cpu", "--go-id", "--id-mode", "entity")
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        # cobra's persistent flags: after `workflow` or after the verb, long or short.
        ("-s", "t:1", "-n", "ns", "-q", "q", "--verbose", "--json", "status"),
        ("status", "-s", "t:1", "-n", "ns", "-q", "q", "--verbose", "--json"),
        ("--server", "t:1", "status", "--namespace", "ns", "--queue", "q", "--json", "--verbose"),
    ],
)
def test_shared_flags_are_accepted_before_and_after_the_verb(argv: tuple[str, ...]) -> None:
    args, options = _parse(*argv)
    assert args.verb == "status"
    assert options == Options("t:1", "ns", "q", verbose=True, json=True)


def test_go_global_flags_before_the_command() -> None:
    # `preempctl --json --verbose workflow status`, as the Go CLI's README writes it.
    args = build_parser().parse_args(["--json", "--verbose", "workflow", "status"])
    options = Options.from_args(args)
    assert (options.json, options.verbose) == (True, True)
    _, options = _parse("status")
    assert (options.json, options.verbose) == (False, False)


def test_a_flag_after_the_verb_wins_over_one_before_it() -> None:
    _, options = _parse("-s", "before:1", "cancel", "-s", "after:2")
    assert options.server == "after:2"


def test_run_flags_short_and_long() -> None:
    args, _ = _parse("run", "-t", "gpu", "-c", "high", "-e", "{}", "--reply-to", "http://sink")
    assert (args.tag, args.criticality, args.event, args.reply_to) == (
        "gpu",
        "high",
        "{}",
        "http://sink",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("run", "--run-id", "x"),  # as in Go, only status and cancel take a run ID
        ("run", "--workflow-id", "x"),
        ("status", "--tag", "x"),
        ("cancel", "-c", "HIGH"),
        (),  # a verb is required
    ],
)
def test_flags_of_other_verbs_are_refused_with_exit_2(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as caught:
        _parse(*argv)
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("core_error", "reason"),
    [
        (
            RuntimeError(
                "Failed client connect: Server connection error: "
                "tonic::transport::Error(Transport, "
                'ConnectError(ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, '
                'kind: ConnectionRefused, message: "Connection refused" })))'
            ),
            "Connection refused",
        ),
        (
            RuntimeError(
                "Failed client connect: Server connection error: "
                "tonic::transport::Error(Transport, "
                'ConnectError(ConnectError("dns error", Custom { kind: Uncategorized, error: '
                '"failed to lookup address information: Name or service not known" })))'
            ),
            "failed to lookup address information: Name or service not known",
        ),
        (ValueError("invalid target URL: invalid international domain name"), "invalid target URL"),
        (TimeoutError(), "no answer within 5s"),
    ],
)
def test_connect_failure_reason_keeps_the_useful_part(core_error: Exception, reason: str) -> None:
    text = connect_failure_reason(core_error)
    assert text.startswith(reason)
    assert "\n" not in text and "tonic" not in text


def test_vcenter_names_the_task_queue_as_the_chart_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VCENTER_TASKQUEUES", raising=False)
    _, options = _parse("status", "--vcenter", "vcsa-2")
    assert options.queue == "vsphere-preemption-vcsa-2"
    # A host the function's routes name: that route's queue.
    monkeypatch.setenv("VCENTER_TASKQUEUES", '{"https://VCSA-2.example.com/sdk": "queue-b"}')
    _, options = _parse("run", "--vcenter", "vcsa-2.example.com")
    assert options.queue == "queue-b"


def test_vcenter_and_queue_after_the_verb_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["workflow", "status", "--vcenter", "a", "-q", "b"]) == 2
    assert "--vcenter names the task queue: not with --queue" in capsys.readouterr().err
