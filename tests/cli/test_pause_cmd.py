"""`preemptctl pause` and `unpause`: what they accept, and what they refuse before sending anything.

No server: every refusal here happens before a connection is tried (exit 2, one line naming
the flag), and the one test that gets past the checks points at a closed port (exit 1, one
line). What a valid command sends is the signal body, read where the command builds it.
"""

from __future__ import annotations

from typing import Any

import pytest

from vsphere_preemption.cli import pause_cmd
from vsphere_preemption.cli.main import build_parser, main
from vsphere_preemption.devtools.devservers import free_port

pytestmark = pytest.mark.usefixtures("_no_sink_no_routes")


@pytest.fixture
def _no_sink_no_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's own K_SINK or vCenter routes must not change what a command is given.
    monkeypatch.delenv("K_SINK", raising=False)
    monkeypatch.delenv("VCENTER_TASKQUEUES", raising=False)
    monkeypatch.setenv("USER", "ops")


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command; it must exit 2 with one line on stderr, nothing on stdout."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pause"], "--reason is required"),
        (["pause", "--reason", "   "], "--reason is required"),
        (["pause", "--reason", "x" * 501], "the reason is longer than 500 characters"),
        (["pause", "--reason", "x", "--for", "soon"], "--for: not a duration: 'soon'"),
        (["pause", "--reason", "x", "--for", "0"], "--for must be longer than zero"),
        (["pause", "--reason", "x", "--for=-5m"], "--for: not a duration: '-5m'"),
        # Days are not a unit: one duration dialect for the settings, the policy and the CLI.
        (["pause", "--reason", "x", "--for", "2d"], "--for: not a duration: '2d'"),
        (["pause", "--reason", "x", "--for", "nan"], "--for: not a duration: 'nan'"),
        (["pause", "--reason", "x", "--for", "1e300"], "--for: a pause of 1e+300s ends beyond"),
        (["pause", "--reason", "x", "--entity", "domain-c7"], "name the alarm too"),
        (["pause", "--reason", "x", "--alarm", ""], "--alarm must not be empty"),
        (["pause", "--reason", "x", "--alarm", "cpu", "--entity", " "], "--entity must not be"),
        (["pause", "--list", "--reason", "x"], "--list shows every pause and changes none: not "),
        (["pause", "--reason", "x", "--reply-to", "ftp://sink"], "--reply-to: replyTo must be"),
        (["pause", "--reason", "x", "-s", ""], "--server must not be empty"),
        (["pause", "--reason", "x", "-q", "a", "--vcenter", "vc1"], "--vcenter names the task"),
        (["unpause", "--entity", "domain-c7"], "--entity names an entity of one alarm"),
        (["unpause", "--all", "--alarm", "cpu"], "--all lifts every pause: not with --alarm"),
        (["unpause", "--alarm", "  "], "--alarm must not be empty"),
    ],
)
def test_bad_input_is_refused_in_one_line_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(argv, capsys)
    assert line.startswith(f"preemptctl {argv[0]}: error: ")
    assert message in line


def test_list_names_every_flag_it_would_have_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(
        ["pause", "--list", "--alarm", "cpu", "--entity", "domain-c7", "--for", "1h",
         "--reply-to", "http://sink"],
        capsys,
    )  # fmt: skip
    assert line.endswith("not with --alarm, --entity, --for, --reply-to")


def test_a_bad_k_sink_is_named_as_where_the_url_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("K_SINK", "not a url")
    line = refused(["pause", "--reason", "upgrade"], capsys)
    assert "K_SINK (the default --reply-to): " in line
    # An explicit --reply-to wins over the environment, even an empty one (no announcement).
    assert body("pause", "--reason", "upgrade", "--reply-to", "")["replyTo"] == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["unpause", "--reason", "x"],  # an unpause needs no reason
        ["pause", "--reason", "x", "--all"],  # --all lifts pauses; it sets none
        ["pause", "--reason", "x", "--for"],  # a flag without its value
    ],
)
def test_flags_a_command_does_not_have_are_refused_by_the_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert "error:" in err and "Traceback" not in err


def body(*argv: str) -> dict[str, Any]:
    args = build_parser(argv[0]).parse_args(list(argv))
    return pause_cmd._body(args)


def test_a_pause_sends_its_scope_reason_expiry_author_and_sink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("K_SINK", "http://sink.example/")
    sent = body(
        "pause", "--reason", "  DRS tuning ", "--for", "1h30m",
        "--alarm", " cpu ", "--entity", "domain-c7",
    )  # fmt: skip
    assert sent == {
        "alarm": "cpu",
        "entity": "domain-c7",
        "reason": "DRS tuning",
        "forSeconds": 5400.0,
        "by": "ops",
        "replyTo": "http://sink.example/",
    }
    everything = body("pause", "--reason", "upgrade")
    assert (everything["alarm"], everything["entity"], everything["forSeconds"]) == (
        None,
        None,
        None,  # until unpaused
    )


def test_unpause_names_the_scope_as_it_was_set_or_all() -> None:
    assert body("unpause", "--alarm", "cpu", "--entity", "domain-c7") == {
        "alarm": "cpu",
        "entity": "domain-c7",
        "all": False,
        "by": "ops",
    }
    assert body("unpause", "--all")["all"] is True
    assert body("unpause") == {"alarm": None, "entity": None, "all": False, "by": "ops"}
    assert body("pause", "--list") == {}


def test_valid_input_and_no_server_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{free_port()}"  # bound, then released: nothing listens there
    code = main(["pause", "--reason", "upgrade", "-s", address])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert err.startswith(f"preemptctl pause: error: cannot reach the Temporal server at {address}")
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
