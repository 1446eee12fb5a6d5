"""VCenterConfig: the secret files, the URL, the TLS context. No server needed."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import ConfigError

SECRET = "p@ss w0rd\twith spaces"


def secret_dir(tmp_path: Path, username: str | None, password: str | None) -> Path:
    if username is not None:
        (tmp_path / "username").write_text(username)
    if password is not None:
        (tmp_path / "password").write_text(password)
    return tmp_path


def load(path: Path, url: str = "https://vc.example.com/sdk") -> VCenterConfig:
    return VCenterConfig.from_secret_dir(url, path, insecure=False, ca_bundle=None)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        (SECRET, SECRET),
        (SECRET + "\n", SECRET),  # echo x > password
        (SECRET + "\r\n", SECRET),
        (SECRET + "\n\n", SECRET + "\n"),  # exactly one newline goes
        (" " + SECRET + " ", " " + SECRET + " "),  # spaces are the secret's own
    ],
)
def test_secret_files_lose_one_trailing_newline(tmp_path: Path, written: str, read: str) -> None:
    config = load(secret_dir(tmp_path, "administrator@vsphere.local\n", written))
    assert config.username == "administrator@vsphere.local"
    assert config.password == read


@pytest.mark.parametrize("missing", ["username", "password"])
def test_a_missing_secret_file_is_named(tmp_path: Path, missing: str) -> None:
    path = secret_dir(
        tmp_path,
        None if missing == "username" else "admin",
        None if missing == "password" else SECRET,
    )
    with pytest.raises(ConfigError, match=f"{tmp_path / missing} does not exist") as error:
        load(path)
    assert SECRET not in str(error.value)


def test_an_empty_or_unreadable_secret_file_is_named_never_shown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password is empty"):
        load(secret_dir(tmp_path, "admin", "\n"))
    (tmp_path / "password").unlink()
    (tmp_path / "password").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read vCenter secret file .*password"):
        load(tmp_path)
    (tmp_path / "password").rmdir()
    (tmp_path / "password").write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError, match="not UTF-8") as error:
        load(tmp_path)
    assert SECRET not in str(error.value)


def test_repr_hides_the_password() -> None:
    config = VCenterConfig("https://vc/sdk", "admin", SECRET)
    assert SECRET not in repr(config) and SECRET not in str(config)
    assert "admin" in repr(config)


@pytest.mark.parametrize(
    ("url", "address", "path", "rest"),
    [
        ("https://vc.example.com/sdk", "vc.example.com:443", "/sdk", "https://vc.example.com:443"),
        ("https://vc.example.com", "vc.example.com:443", "/sdk", "https://vc.example.com:443"),
        ("https://127.0.0.1:8989/sdk/", "127.0.0.1:8989", "/sdk", "https://127.0.0.1:8989"),
        ("https://[::1]:8989/sdk", "[::1]:8989", "/sdk", "https://[::1]:8989"),
    ],
)
def test_url_forms(url: str, address: str, path: str, rest: str) -> None:
    config = VCenterConfig(url, "admin", SECRET)
    assert (config.address, config.soap_path, config.rest_base) == (address, path, rest)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("vc.example.com", "must look like https://host"),
        ("ftp://vc/sdk", "must look like https://host"),
        ("http://vc/sdk", "must use https://, not http://"),
        ("https://:443/sdk", "must look like https://host"),
        (f"https://admin:{SECRET}@vc/sdk", "must not carry credentials"),
        ("https://vc:99999/sdk", "invalid port"),
    ],
)
def test_bad_urls_are_refused_without_being_echoed(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        VCenterConfig(url, "admin", SECRET)
    assert SECRET not in str(error.value) and url not in str(error.value)


def test_tls_context_verifies_unless_insecure(tmp_path: Path) -> None:
    strict = VCenterConfig("https://vc/sdk", "admin", SECRET).ssl_context()
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = VCenterConfig("https://vc/sdk", "admin", SECRET, insecure=True).ssl_context()
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname


def test_a_bad_ca_bundle_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=f"cannot load the vCenter CA bundle {missing}"):
        VCenterConfig("https://vc/sdk", "admin", SECRET, ca_bundle=missing).ssl_context()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot load the vCenter CA bundle"):
        VCenterConfig("https://vc/sdk", "admin", SECRET, ca_bundle=garbage).ssl_context()
