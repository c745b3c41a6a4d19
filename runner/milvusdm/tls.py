"""TLS to Milvus: pymilvus' connection options for an endpoint, and a one-line diagnosis when a
connection fails because of TLS (gRPC itself only reports a timeout).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from milvusdm import env
from milvusdm.errors import InputError
from milvusdm.spec import MilvusEndpoint

FIX_CA = "set tls.caFile (or the Secret's ca.crt) to the CA that signed the server's certificate"


def client_options(endpoint: MilvusEndpoint, role: env.Role) -> dict[str, Any]:
    """``secure``, the PEM paths and ``server_name`` for ``MilvusClient``."""
    if endpoint.is_lite or (endpoint.tls is None and not endpoint.uri.startswith("https://")):
        return {}
    options: dict[str, Any] = {"secure": True}
    if endpoint.tls is None:
        return options  # https:// with the system's CAs
    ca, cert, key = endpoint.tls.files(role)
    for name, path in (("caFile", ca), ("certFile", cert), ("keyFile", key)):
        if path is not None and not Path(path).is_file():
            raise InputError(f"{role} tls.{name} {path} does not exist", "pass a PEM file (or mount the Secret)")
    if cert and key:
        if ca is None:
            raise InputError(f"{role} mutual TLS needs tls.caFile too", FIX_CA)
        options |= {"ca_pem_path": ca, "client_pem_path": cert, "client_key_path": key}
    elif ca:
        options["server_pem_path"] = ca
    if endpoint.tls.server_name:
        options["server_name"] = endpoint.tls.server_name
    return options


def diagnose(endpoint: MilvusEndpoint, role: env.Role, timeout: float = 5.0) -> InputError | None:
    """Why a TLS mismatch made the connection fail, or None when TLS is not the problem."""
    if endpoint.is_lite:
        return None
    parts = urlsplit(endpoint.uri if "://" in endpoint.uri else f"tcp://{endpoint.uri}")
    host, port = parts.hostname or "localhost", parts.port or 19530
    options = client_options(endpoint, role)
    context = ssl.create_default_context(cafile=options.get("server_pem_path") or options.get("ca_pem_path"))
    if "client_pem_path" in options:
        context.load_cert_chain(options["client_pem_path"], options["client_key_path"])
    if not options:  # a plain client: does the server insist on TLS?
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    name = options.get("server_name") or host
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            tls.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                tls.recv(1)  # TLS 1.3 servers refuse a client certificate after the handshake
    except ssl.SSLCertVerificationError as error:
        return InputError(
            f"{role} Milvus at {endpoint.uri}: its TLS certificate is not trusted: {error.verify_message}", FIX_CA
        )
    except ssl.SSLError as error:
        if not options:
            return None
        if "CERTIFICATE" in (error.reason or "").upper():
            return InputError(
                f"{role} Milvus at {endpoint.uri} refused the client certificate: {error.reason}",
                "set tls.certFile/keyFile (or the Secret's tls.crt/tls.key) to a certificate its CA signed",
            )
        return InputError(
            f"{role} Milvus at {endpoint.uri} does not speak TLS ({error.reason})",
            "remove tls and use http://, or point at the server's TLS port",
        )
    except OSError:
        return None  # unreachable: not a TLS question
    if not options:
        return InputError(
            f"{role} Milvus at {endpoint.uri} requires TLS",
            "set tls.caFile (and certFile/keyFile for mutual TLS), or use https://",
        )
    return None
