"""What a user writes to connect to an MQTT broker: the URL, TLS, login and reconnection, shared by
every MQTT client in edgeflow (the uplink, the receiver, the MQTT device connector, the twin)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from edgeflow.errors import ConfigError
from edgeflow.parsing import PositiveSeconds

__all__ = ["BrokerAddress", "MqttAuthSpec", "ReconnectSpec", "TlsSpec", "parse_broker_url"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerAddress(BaseModel):
    """A parsed broker URL."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]``, ``mqtts://host[:8883]`` (also ``tcp://``, ``ssl://``, ``tls://``).

    >>> parse_broker_url("mqtts://broker.example")
    BrokerAddress(host='broker.example', port=8883, tls=True)
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    scheme = parts.scheme.lower()
    if scheme in ("mqtt", "tcp"):
        tls = False
    elif scheme in ("mqtts", "ssl", "tls"):
        tls = True
    else:
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://, not {scheme}://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: only scheme, host and port are allowed")
    if parts.username or parts.password:
        raise ValueError(f"broker URL {url!r}: put credentials under auth, not in the URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: {exc}") from None
    return BrokerAddress(host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls)


class TlsSpec(_Spec):
    """TLS to the broker. On whenever the URL is ``mqtts://``. The broker's certificate is always
    verified against ``ca_file`` (or the system's CAs) and its name checked; a failure is an error,
    never a fallback to plaintext."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    #: Name sent as SNI and checked against the certificate; default: the URL's host.
    server_hostname: str | None = None
    #: Turning this off still verifies the chain; only the name check is skipped.
    check_hostname: bool = True
    min_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _pair(self) -> TlsSpec:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (mutual TLS takes a client certificate and its key)")
        return self


class MqttAuthSpec(_Spec):
    """Username and password. Keep the password out of the file: ``password_file`` (a mounted
    Kubernetes Secret, read at connect time, trailing newline dropped), ``password_env`` (the name of
    an environment variable), or the ``EDGEFLOW__UPLINK__AUTH__PASSWORD`` override; ``password``
    inline works but is for tests."""

    username: str = Field(min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_password(self) -> MqttAuthSpec:
        given = [k for k in ("password", "password_file", "password_env") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(given)}, not several")
        return self

    def secret(self) -> str | None:
        """The password, from wherever it is kept; a ConfigError naming the key when it cannot be read."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"auth.password_env: the environment has no {self.password_env}")
            return value
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"auth.password_file: cannot read {self.password_file}: {exc}") from None
        return None


class ReconnectSpec(_Spec):
    """Capped, jittered exponential backoff between connection attempts (durations: seconds, or
    ``"500ms"``, ``"1m"``)."""

    initial_delay: PositiveSeconds = 0.5
    max_delay: PositiveSeconds = 30.0
    multiplier: float = Field(default=2.0, ge=1.0)

    @model_validator(mode="after")
    def _order(self) -> ReconnectSpec:
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must be >= initial_delay")
        return self
