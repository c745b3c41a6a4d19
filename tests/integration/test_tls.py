"""TLS and mutual TLS to a real Milvus server (tlsMode 1 and 2), certificates made here."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from milvusdm.testing import QUICK_SETTINGS, EmbeddedMilvus
from tests.conftest import make_h5, manifest

pytestmark = pytest.mark.server


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_pki(folder: Path, ca_name: str) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files."""
    folder.mkdir(parents=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())

    def issue(subject, key, extensions, issuer=None, signer=None):
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
        builder = builder.public_key(key.public_key()).serial_number(x509.random_serial_number())
        builder = builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
            now + datetime.timedelta(days=1)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer or key, hashes.SHA256())

    ca = issue(_name(ca_name), ca_key, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    _write(folder, "ca", ca, ca_key)
    for stem, usage, names in (
        (
            "server",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        ),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("milvusdm")]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        extensions = [(x509.SubjectAlternativeName(names), False), (x509.ExtendedKeyUsage([usage]), False)]
        _write(folder, stem, issue(_name(stem), key, extensions, issuer=ca.subject, signer=ca_key), key)
    return folder


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("tls") / "pki", "milvusdm test CA")


def _server(folder: Path, pki: Path, mode: int) -> EmbeddedMilvus:
    files = {
        "server_pem_path": pki / "server.crt",
        "server_key_path": pki / "server.key",
        "ca_pem_path": pki / "ca.crt",
    }
    return EmbeddedMilvus(folder, tls_mode=mode, tls_files=files, settings=QUICK_SETTINGS)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    with _server(tmp_path_factory.mktemp("milvus-tls"), pki, 1) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    with _server(tmp_path_factory.mktemp("milvus-mtls"), pki, 2) as server:
        yield server


def copy(tmp_path, server, tls, name, rows=3000) -> subprocess.CompletedProcess:
    """``milvusdm run`` in its own process (pymilvus reuses an open connection to the same uri)."""
    data = make_h5(tmp_path / f"{name}.h5", np.random.default_rng(7).random((rows, 8), dtype=np.float32))
    target = {
        "milvus": {
            "uri": server.uri,
            "collection": name,
            "index": {"type": "FLAT"},
            "timeoutSeconds": 10,
            **({"tls": tls} if tls is not None else {}),
        }
    }
    path = manifest(tmp_path, {"hdf5": {"path": str(data)}}, target, verify="ids")
    return subprocess.run(
        [sys.executable, "-m", "milvusdm", "run", "-f", str(path), "-q", "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_copy_over_tls(tmp_path, tls_server, pki):
    result = copy(tmp_path, tls_server, {"caFile": str(pki / "ca.crt"), "serverName": "localhost"}, "over_tls")
    assert result.returncode == 0, result.stderr
    assert "copied 3000 rows" in result.stdout and "ids (3000 ids present, count 3000)" in result.stdout


def test_copy_over_mutual_tls(tmp_path, mtls_server, pki):
    tls = {"caFile": str(pki / "ca.crt"), "certFile": str(pki / "client.crt"), "keyFile": str(pki / "client.key")}
    result = copy(tmp_path, mtls_server, tls, "over_mtls")
    assert result.returncode == 0, result.stderr
    assert "ids (3000 ids present, count 3000)" in result.stdout


def test_wrong_ca_is_refused_in_one_line(tmp_path, tls_server):
    other = make_pki(tmp_path / "other", "someone else's CA")
    result = copy(tmp_path, tls_server, {"caFile": str(other / "ca.crt")}, "wrong_ca")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("milvusdm: error: target Milvus at ") and "certificate is not trusted" in line
    assert "tls.caFile" in line


def test_mutual_tls_without_a_client_certificate_is_refused(tmp_path, mtls_server, pki):
    result = copy(tmp_path, mtls_server, {"caFile": str(pki / "ca.crt")}, "no_client_cert")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "refused the client certificate" in line and "tls.certFile" in line


def test_plain_client_against_a_tls_server_is_refused_clearly(tmp_path, tls_server):
    result = copy(tmp_path, tls_server, None, "plain")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "requires TLS" in line and "tls.caFile" in line
