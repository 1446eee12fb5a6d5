"""TEMPORAL_TLS*, TEMPORAL_API_KEY_FILE: read by the function, the worker and preemptctl alike;
files read at start, their problems named, their contents never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsphere_preemption.settings import (
    FunctionSettings,
    SettingsError,
    TemporalAccess,
    WorkerSettings,
    load,
)

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
BASE = {"TEMPORAL_URL": "t:7233", "VCENTER_URL": "https://vc/sdk"}


def test_plain_by_default_and_tls_implied_by_any_tls_setting(tmp_path: Path) -> None:
    assert load(TemporalAccess, {}).temporal_security.tls is False
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    for env in (
        {"TEMPORAL_TLS_CA": str(ca)},
        {"TEMPORAL_API_KEY_FILE": str(key)},
        {"TEMPORAL_TLS_SERVER_NAME": "ns.tmprl.cloud"},
        {"TEMPORAL_TLS": "true"},
    ):
        assert load(TemporalAccess, env).temporal_security.tls is True, env
    security = load(
        WorkerSettings, BASE | {"TEMPORAL_TLS_CA": str(ca), "TEMPORAL_API_KEY_FILE": str(key)}
    ).temporal_security
    assert security.ca == PEM
    assert security.api_key == "s3cret-key"  # the file's newline is not the key's
    assert "s3cret-key" not in repr(security)
    # The key in a file over a plain connection (a local sidecar proxy): asked for, allowed.
    plain = load(TemporalAccess, {"TEMPORAL_TLS": "false", "TEMPORAL_API_KEY_FILE": str(key)})
    assert plain.temporal_security.tls is False


def test_the_function_and_the_worker_read_the_same_variables(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    function_env = {"TEMPORAL_URL": "t:7233", "TEMPORAL_NAMESPACE": "n", "TEMPORAL_TASKQUEUE": "q",
                    "VSPHERE_PREEMPTION_TAG": "p", "VSPHERE_ALARM_NAME": "a"}  # fmt: skip
    env = {"TEMPORAL_TLS_CA": str(ca), "TEMPORAL_TLS_SERVER_NAME": "temporal.internal"}
    for security in (
        load(FunctionSettings, function_env | env).temporal_security,
        load(WorkerSettings, BASE | env).temporal_security,
    ):
        assert (security.tls, security.ca, security.server_name) == (
            True,
            PEM,
            "temporal.internal",
        )


def test_every_bad_file_is_named_and_none_is_echoed(tmp_path: Path) -> None:
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("s3cret-not-pem")
    empty = tmp_path / "empty-key"
    empty.write_text("\n")
    env = BASE | {
        "TEMPORAL_TLS_CA": str(tmp_path / "nowhere.pem"),
        "TEMPORAL_TLS_CERT": str(not_pem),
        "TEMPORAL_API_KEY_FILE": str(empty),
    }
    with pytest.raises(SettingsError) as err:
        load(WorkerSettings, env)
    message = str(err.value)
    assert (
        f"TEMPORAL_TLS_CA: cannot read the CA bundle {tmp_path / 'nowhere.pem'} "
        "(No such file or directory)" in message
    )
    assert f"TEMPORAL_TLS_CERT: the client certificate {not_pem} is not PEM" in message
    assert "TEMPORAL_API_KEY_FILE is empty" in message
    assert "s3cret" not in message


def test_a_client_certificate_needs_its_key_and_tls_off_refuses_tls_files(
    tmp_path: Path,
) -> None:
    cert = tmp_path / "c.pem"
    cert.write_bytes(PEM)
    with pytest.raises(SettingsError, match="TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together"):
        load(TemporalAccess, {"TEMPORAL_TLS_CERT": str(cert)})
    with pytest.raises(SettingsError, match="TEMPORAL_TLS is false, but"):
        load(TemporalAccess, {"TEMPORAL_TLS": "false", "TEMPORAL_TLS_CA": str(cert)})
    with pytest.raises(SettingsError, match="TEMPORAL_TLS "):
        load(TemporalAccess, {"TEMPORAL_TLS": "maybe"})


def test_preemptctl_names_a_bad_tls_setting_in_one_line_before_connecting(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env["TEMPORAL_TLS_CA"] = str(tmp_path / "nowhere.pem")
    done = subprocess.run(
        [sys.executable, "-m", "vsphere_preemption", "workflow", "list"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"preemptctl workflow list: error: TEMPORAL_TLS_CA: cannot read the CA bundle "
        f"{tmp_path / 'nowhere.pem'} (No such file or directory)"
    ]


def help_text(*command: str) -> str:
    import contextlib
    import io

    from vsphere_preemption.cli.main import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return " ".join(out.getvalue().split())


def test_the_readme_and_the_help_name_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    worker = [f.alias for f in WorkerSettings.model_fields.values() if f.alias]
    for names, command in ((FunctionSettings.variables(), "function"), (worker, "worker")):
        helptext = help_text(command)
        for name in names:
            assert f"`{name}`" in readme, name
            if name.startswith(("TEMPORAL_TLS", "TEMPORAL_API", "FUNCTION_", "SINK_")):
                assert name in helptext, (command, name)
    for program in ("workflow", "history"):
        helptext = help_text(program)
        for field in TemporalAccess.model_fields.values():
            if field.alias:
                assert field.alias in helptext, (program, field.alias)
