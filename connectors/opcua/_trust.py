"""Which server certificates edgeflow trusts: exactly those the configuration names.

A server certificate is accepted when it is valid now and either is one of ``TrustedCerts`` (pinned)
or was issued by one of them (a CA certificate), and, when it carries an application URI, that URI is
the one the server announces. Anything else is refused with a message that names the certificate
(subject and SHA-256 thumbprint) and says which check failed. There is no "accept on first use" and no
fallback to an unsecured channel.

Uses ``cryptography`` (which asyncua brings); nothing here imports asyncua.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "TrustError",
    "application_uri",
    "check_key_pair",
    "check_server_certificate",
    "describe",
    "first_certificate",
    "load_certificates",
    "pem_key",
]


class TrustError(Exception):
    """A certificate is not acceptable; the message says which and why."""


def describe(cert: x509.Certificate) -> str:
    """``CN=plc-7, SHA-256 3f:a1:…`` — enough to find the certificate in a trust list."""
    try:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        value = cn[0].value if cn else None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        name = f"CN={value}" if value else cert.subject.rfc4514_string() or "no subject"
    except ValueError:
        name = "unreadable subject"
    thumb = cert.fingerprint(hashes.SHA256()).hex(":")[:47]
    return f"{name} (SHA-256 {thumb}…)"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read {path}: {exc.strerror}") from None


def load_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Every certificate in ``paths`` (PEM, possibly several per file, or DER)."""
    out: list[x509.Certificate] = []
    for path in paths:
        data = _read(path)
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                out.extend(x509.load_pem_x509_certificates(data))
            else:
                out.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise TrustError(f"{path} is not a certificate (PEM or DER): {exc}") from None
    return out


def load_certificate(path: Path) -> x509.Certificate:
    certs = load_certificates([path])
    if len(certs) != 1:
        raise TrustError(f"{path} holds {len(certs)} certificates; expected one")
    return certs[0]


def application_uri(cert: x509.Certificate) -> str | None:
    """The application URI in a certificate's subjectAltName, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def check_key_pair(cert_file: Path, key_file: Path, password: str | None) -> x509.Certificate:
    """The certificate of ``cert_file``, after checking that ``key_file`` is its private key."""
    cert = load_certificate(cert_file)
    data = _read(key_file)
    pw = password.encode() if password else None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, pw)
        else:
            key = serialization.load_der_private_key(data, pw)
    except (ValueError, TypeError) as exc:
        raise TrustError(
            f"{key_file} is not a private key edgeflow can read (wrong KeyPassword?): {exc}"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TrustError(f"{key_file}: OPC-UA security policies need an RSA key, not {type(key).__name__}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise TrustError(f"{key_file} is not the private key of {cert_file} ({describe(cert)})")
    return cert


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_server_certificate(
    der: bytes,
    trusted: Sequence[x509.Certificate],
    *,
    sources: Sequence[Path] = (),
    announced_uri: str | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """Accept the server certificate ``der`` or raise :class:`TrustError` saying which check failed."""
    if not der:
        raise TrustError("the server sent no certificate for a secured endpoint")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise TrustError(f"the server's certificate cannot be parsed: {exc}") from None
    who = describe(cert)
    at = now or datetime.now(UTC)
    if cert.not_valid_after_utc < at:
        raise TrustError(
            f"the server certificate {who} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_before_utc > at:
        raise TrustError(
            f"the server certificate {who} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    listed = ", ".join(str(p) for p in sources) or "TrustedCerts"
    pinned = any(t.public_bytes(serialization.Encoding.DER) == der for t in trusted)
    if not pinned:
        issuers = [t for t in trusted if _issued_by(cert, t)]
        if not issuers:
            raise TrustError(
                f"the server certificate {who} is not trusted: it is not in TrustedCerts ({listed}) "
                "and none of them issued it"
            )
        for ca in issuers:
            if ca.not_valid_after_utc < at or ca.not_valid_before_utc > at:
                raise TrustError(f"the CA certificate {describe(ca)} that issued {who} is not valid now")
    uri = application_uri(cert)
    if announced_uri and uri and uri != announced_uri:
        raise TrustError(
            f"the server certificate {who} is for application {uri!r}, but the server announces {announced_uri!r}"
        )
    return cert


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may hold a chain."""
    if len(der) < 4 or der[0] != 0x30:
        return der
    if der[1] < 0x80:
        return der[: 2 + der[1]]
    n = der[1] & 0x7F
    return der[: 2 + n + int.from_bytes(der[2 : 2 + n], "big")]


def pem_key(path: Path, password: str | None) -> bytes:
    """The private key of ``path`` (PEM or DER, maybe encrypted) as unencrypted PKCS#8 PEM, in memory."""
    data = path.read_bytes()
    pw = password.encode() if password else None
    key = (
        serialization.load_pem_private_key(data, pw)
        if b"-----BEGIN" in data
        else serialization.load_der_private_key(data, pw)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
