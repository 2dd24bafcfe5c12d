"""Test certificates: a private CA, certificates it signs, self-signed and expired ones.

Built with ``cryptography`` (already a paramiko dependency) so tests need no openssl CLI.
Keys are ECDSA P-256 by default because generating them is instant; pass ``key_type="rsa"``
where a peer needs RSA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

DEFAULT_HOSTNAMES: tuple[str, ...] = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class CertPair:
    """A certificate and its key on disk (PEM), plus the objects."""

    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: PrivateKey

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def fingerprint_sha256(self) -> str:
        """Hex SHA-256 of the DER certificate (as ``openssl x509 -fingerprint -sha256``)."""
        return self.cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CA(CertPair):
    """A test certificate authority; ``cert_path`` is the file to trust (cafile=)."""


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key_type {key_type!r}")


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: PrivateKey
) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # Readable by the unprivileged workers of Dovecot/Postfix; it is a throwaway test key.
    key_path.chmod(0o644)
    return cert_path, key_path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(directory: Path, name: str = "Watcher Test CA", *, key_type: str = "ec") -> CA:
    """Create a CA (10 years) and write ``<directory>/ca.crt`` and ``ca.key``."""
    key = _new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = _write(Path(directory), "ca", cert, key)
    return CA(cert_path, key_path, cert, key)


def _san(hostnames: list[str] | tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make_cert(
    ca: CA | None,
    directory: Path,
    hostnames: list[str] | tuple[str, ...] = DEFAULT_HOSTNAMES,
    *,
    name: str = "server",
    days: int = 30,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    expired: bool = False,
    key_type: str = "ec",
) -> CertPair:
    """Create a server certificate for ``hostnames`` and write ``<name>.crt``/``<name>.key``.

    ``ca=None`` makes it self-signed. ``expired=True`` makes it valid from 30 days ago to
    yesterday; ``not_before``/``not_after`` set the window explicitly (e.g. a cert that
    expires in 3 days, for "certificate expires soon" checks).
    """
    key = _new_key(key_type)
    now = _now()
    if expired:
        not_before = not_before or now - dt.timedelta(days=30)
        not_after = not_after or now - dt.timedelta(days=1)
    not_before = not_before or now - dt.timedelta(hours=1)
    not_after = not_after or now + dt.timedelta(days=days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    issuer_key: PrivateKey = ca.key if ca is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject if ca is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    cert_path, key_path = _write(Path(directory), name, cert, key)
    return CertPair(cert_path, key_path, cert, key)


def make_self_signed(
    directory: Path, hostnames: list[str] | tuple[str, ...] = DEFAULT_HOSTNAMES, **kwargs: object
) -> CertPair:
    """Shorthand for ``make_cert(None, ...)``: a self-signed certificate no CA vouches for."""
    kwargs.setdefault("name", "selfsigned")
    return make_cert(None, directory, hostnames, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TestPKI:
    """The usual set for TLS tests: a CA, a valid and an expired cert from it, a self-signed one."""

    __test__ = False  # not a pytest test class despite the name

    ca: CA
    valid: CertPair
    expired: CertPair
    self_signed: CertPair


def make_test_pki(
    directory: Path, hostnames: list[str] | tuple[str, ...] = DEFAULT_HOSTNAMES
) -> TestPKI:
    """Write a CA plus valid/expired/self-signed server certificates under ``directory``."""
    directory = Path(directory)
    ca = make_ca(directory)
    return TestPKI(
        ca=ca,
        valid=make_cert(ca, directory, hostnames, name="server"),
        expired=make_cert(ca, directory, hostnames, name="expired", expired=True),
        self_signed=make_self_signed(directory, hostnames),
    )
