"""Throwaway PKI for the dev control plane: a CA, an API-server serving cert, a service-account key.

Why its own module: the control plane needs real TLS (clients verify the server) and a real
service-account signing key, and there are two ways to make them: the ``cryptography`` package when
it is installed, else the ``openssl`` CLI (Debian's openssl package), so the dev env needs no extra
Python dependency.

Guarantees: ``write_pki(dir, hosts)`` leaves ``ca.crt``, ``serving.crt``, ``serving.key``,
``sa.key`` (RSA private, PEM) and ``sa.pub`` in ``dir``; keys are mode 0600; the serving cert's SANs
are exactly ``hosts`` (IP literals become IP SANs). Certificates are valid for one day: nothing here
outlives a test session or a demo.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

VALIDITY = datetime.timedelta(days=1)
RSA_BITS = 2048  # the apiserver accepts smaller keys for nothing; 2048 is fast enough (~50 ms)


def write_pki(directory: Path, *, hosts: Sequence[str]) -> None:
    if not hosts:
        raise ValueError("the serving certificate needs at least one host")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _write_with_openssl(directory, hosts)
    else:
        _write_with_cryptography(directory, hosts)
    for key in ("serving.key", "sa.key", "ca.key"):
        (directory / key).chmod(0o600)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write_with_cryptography(directory: Path, hosts: Sequence[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def key_pem(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "liqosec-dev-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
        .sign(ca_key, hashes.SHA256())
    )
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]
    serving_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    serving = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(serving_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    pem = serialization.Encoding.PEM
    (directory / "ca.key").write_bytes(key_pem(ca_key))
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(pem))
    (directory / "serving.key").write_bytes(key_pem(serving_key))
    (directory / "serving.crt").write_bytes(serving.public_bytes(pem))
    (directory / "sa.key").write_bytes(key_pem(sa_key))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    except FileNotFoundError as err:
        raise RuntimeError(
            "neither the cryptography package nor the openssl CLI is installed (apt-get install openssl)"
        ) from err
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"openssl {args[0]} failed: {err.stderr.decode(errors='replace')}") from err


def _write_with_openssl(directory: Path, hosts: Sequence[str]) -> None:
    d = directory
    days = str(max(1, VALIDITY.days))
    _openssl(
        "req",
        "-x509",
        "-newkey",
        f"rsa:{RSA_BITS}",
        "-nodes",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.crt"),
        "-days",
        days,
        "-subj",
        "/CN=liqosec-dev-ca",
    )
    _openssl("genrsa", "-out", str(d / "serving.key"), str(RSA_BITS))
    _openssl(
        "req", "-new", "-key", str(d / "serving.key"), "-out", str(d / "serving.csr"), "-subj", "/CN=kube-apiserver"
    )
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    with tempfile.NamedTemporaryFile("w", suffix=".ext", dir=d, delete=False) as ext:
        ext.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / "serving.csr"),
        "-CA",
        str(d / "ca.crt"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-out",
        str(d / "serving.crt"),
        "-days",
        days,
        "-extfile",
        ext.name,
    )
    _openssl("genrsa", "-out", str(d / "sa.key"), str(RSA_BITS))
    _openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))
