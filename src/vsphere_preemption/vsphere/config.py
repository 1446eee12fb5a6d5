"""Where vCenter is, who we are to it, and how we trust its certificate."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vsphere_preemption.vsphere.errors import ConfigError

DEFAULT_SOAP_PATH = "/sdk"


@dataclass(frozen=True)
class VCenterConfig:
    url: str  # https://host[:port]/sdk (or https://host)
    username: str
    password: str = field(repr=False)  # never logged, never in an error
    insecure: bool = False  # TLS verification stays on unless this is True
    ca_bundle: Path | None = None  # extra CA certificates to trust, besides the system's

    def __post_init__(self) -> None:
        # Messages never echo the URL: someone may have put credentials in it.
        parts = urlsplit(self.url.strip())
        if parts.scheme == "http":
            # Basic auth and session ids in clear text: not something to make easy.
            raise ConfigError("vCenter URL must use https://, not http://")
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError("vCenter URL must look like https://host[:port]/sdk")
        if parts.username or parts.password:
            raise ConfigError(
                "vCenter URL must not carry credentials: put them in the secret files"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ConfigError("vCenter URL has an invalid port") from None
        if not self.username:
            raise ConfigError("vCenter username is empty")

    @classmethod
    def from_secret_dir(
        cls, url: str, secret_path: Path, *, insecure: bool, ca_bundle: Path | None
    ) -> VCenterConfig:
        """Read `username` and `password` as a Kubernetes basic-auth secret mounts them."""
        return cls(
            url=url,
            username=_read_secret(secret_path / "username"),
            password=_read_secret(secret_path / "password"),
            insecure=insecure,
            ca_bundle=ca_bundle,
        )

    @property
    def host(self) -> str:
        hostname = urlsplit(self.url.strip()).hostname or ""
        return f"[{hostname}]" if ":" in hostname else hostname

    @property
    def port(self) -> int:
        return urlsplit(self.url.strip()).port or 443

    @property
    def address(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    @property
    def soap_path(self) -> str:
        path = urlsplit(self.url.strip()).path.rstrip("/")
        return path or DEFAULT_SOAP_PATH

    @property
    def rest_base(self) -> str:
        """The server root: the tagging REST API lives beside /sdk, not under it."""
        return f"https://{self.address}"

    def ssl_context(self) -> ssl.SSLContext:
        """Verify against the system CAs plus `ca_bundle`, unless `insecure`.

        Always an explicit context: pyVmomi silently skips verification for
        127.0.0.1/localhost when it is given none.
        """
        context = ssl.create_default_context()
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if self.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(
                    f"cannot load the vCenter CA bundle {self.ca_bundle}: {reason}"
                ) from None
        return context


def _read_secret(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"vCenter secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read vCenter secret file {path}: {reason}") from None
    # `kubectl create secret` keeps the bytes as given; `echo x > file` adds one newline.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ConfigError(f"vCenter secret file {path} is empty")
    return text
