"""Throw-away PKI and kubeconfig for the Kubernetes API emulator."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONTEXT_NAME = "fluxrate-sandbox"


@dataclass(frozen=True)
class ServingPKI:
    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_pem: bytes

    def server_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fluxrate sandbox"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def generate_pki(directory: Path, hosts: list[str] | None = None) -> ServingPKI:
    """Create a fresh CA and a serving certificate for localhost/127.0.0.1 (+ extra hosts)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    validity = datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fluxrate-sandbox-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc")]
    for host in ["127.0.0.1", "::1", *(hosts or [])]:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver")).issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_file = directory / "ca.crt"
    cert_file = directory / "apiserver.crt"
    key_file = directory / "apiserver.key"
    ca_file.write_bytes(ca_pem)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ServingPKI(ca_file=ca_file, cert_file=cert_file, key_file=key_file, ca_pem=ca_pem)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_kubeconfig(path: Path, *, server: str, ca_pem: bytes, token: str, namespace: str = "default") -> Path:
    import base64

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": CONTEXT_NAME,
            "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca_pem).decode(),
            },
        }],
        "users": [{"name": CONTEXT_NAME, "user": {"token": token}}],
        "contexts": [{
            "name": CONTEXT_NAME,
            "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace},
        }],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
