"""TLS to the acquirer: a local TLS host with certificates made by the cryptography package; the trusted one
works, an untrusted, an expired and a wrong-name certificate are each refused with a clear error."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import SIM_TOML
from firmware.config import HostConfig
from firmware.errors import ConfigError, HostError
from firmware.host.link import HostLink, frame, read_frame

NOW = dt.datetime.now(dt.UTC)


# Validity windows far wider than any clock difference: OpenSSL checks them against the system clock, which
# tools/test-on-dates leaves where it is while this process's clock (NOW) is moved years ahead.
MARGIN = dt.timedelta(days=2000)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "Test Acquirer CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - MARGIN)
        .not_valid_after(NOW + MARGIN)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, host: str, expired: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = (NOW - 2 * MARGIN, NOW - MARGIN) if expired else (NOW - MARGIN, NOW + MARGIN)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem(tmp_path, name: str, obj) -> str:
    path = tmp_path / name
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(path)


async def exchange_with(tmp_path, server_key, server_cert, trusted_ca, host: str = "localhost") -> bytes:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem(tmp_path, "srv.pem", server_cert), pem(tmp_path, "srv.key", server_key))

    async def echo(reader, writer):
        try:
            writer.write(frame(await read_frame(reader)))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        link = HostLink(HostConfig(host=host, port=port, tls=True, ca_file=pem(tmp_path, "ca.pem", trusted_ca)))
        return await link.exchange(b"0800 hello", 5, lambda raw: raw)
    finally:
        server.close()


def test_trusted_certificate(tmp_path):
    ca_key, ca = make_ca()
    key, cert = make_server_cert(ca_key, ca, "localhost")
    assert asyncio.run(exchange_with(tmp_path, key, cert, ca)) == b"0800 hello"


@pytest.mark.parametrize("case", ["untrusted", "expired", "wrong name"])
def test_refused_certificates(tmp_path, case):
    ca_key, ca = make_ca()
    other_key, other_ca = make_ca("Somebody Else")
    if case == "untrusted":
        key, cert = make_server_cert(other_key, other_ca, "localhost")
    elif case == "expired":
        key, cert = make_server_cert(ca_key, ca, "localhost", expired=True)
    else:
        key, cert = make_server_cert(ca_key, ca, "acquirer.example.com")
    with pytest.raises(HostError) as err:
        asyncio.run(exchange_with(tmp_path, key, cert, ca))
    assert not err.value.sent and "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    reason = {"untrusted": "unable to get local issuer", "expired": "expired", "wrong name": "mismatch"}[case]
    assert reason in str(err.value)


def test_plaintext_only_to_loopback(tmp_path):
    from firmware.config import load

    text = SIM_TOML.read_text(encoding="utf-8").replace('host = "127.0.0.1"', 'host = "acquirer.example.com"', 1)
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[host\] tls: must be true"):
        load(path)
