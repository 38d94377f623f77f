"""Certificates for the local control plane: a CA, the API server's serving cert, an admin client,
and, for a cluster with a node (`make_pki(..., node=...)`), one client certificate per component
(kubelet, controller-manager, scheduler, kube-proxy, CoreDNS), the kubelet's serving
certificate and the API server's client certificate for the kubelet.

Python 3.13+ rejects certificates without SubjectKeyIdentifier / AuthorityKeyIdentifier, so
every certificate carries both.
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


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files the control plane and its clients use."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path
    # component name -> (certificate, key): "kubelet", "kubelet-serving", "apiserver-kubelet",
    # "controller-manager", "scheduler", "kube-proxy", "coredns" (only with a node)
    components: dict[str, tuple[Path, Path]]
    ca_key: Path


@dataclass(frozen=True)
class NodeIdentity:
    """The node the certificates are for: its name and address (the bridge's address)."""

    name: str
    address: str


# CN / O of each component's client certificate (the API server's authenticator maps them to
# users and groups, and the default RBAC roles name these users).
def _component_subjects(node: NodeIdentity) -> dict[str, tuple[str, str | None]]:
    return {
        "kubelet": (f"system:node:{node.name}", "system:nodes"),
        "apiserver-kubelet": ("kube-apiserver-kubelet-client", "system:masters"),
        "controller-manager": ("system:kube-controller-manager", None),
        "scheduler": ("system:kube-scheduler", None),
        "kube-proxy": ("system:kube-proxy", None),
        "coredns": ("system:coredns", None),
    }


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_pki(directory: Path, node: NodeIdentity | None = None) -> Pki:
    """Write a fresh CA, serving cert, admin client cert and service-account key pair (and,
    with `node`, the certificates of the node's components)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("llmbudget-test-ca")
    ca = _issue(ca_name, ca_key, ca_name, ca_key, ca=True, usages=[], sans=[])

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        _name("kube-apiserver"),
        server_key,
        ca_name,
        ca_key,
        ca=False,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=[
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            *([x509.IPAddress(ipaddress.ip_address(node.address))] if node else []),
        ],
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(
        _name("llmbudget-admin", "system:masters"),
        admin_key,
        ca_name,
        ca_key,
        ca=False,
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        sans=[],
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = Pki(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "apiserver.crt",
        server_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
        components={},
        ca_key=directory / "ca.key",
    )
    pem = serialization.Encoding.PEM
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    pki.server_cert.write_bytes(server.public_bytes(pem))
    pki.server_key.write_bytes(_key_pem(server_key))
    pki.admin_cert.write_bytes(admin.public_bytes(pem))
    pki.admin_key.write_bytes(_key_pem(admin_key))
    pki.service_account_key.write_bytes(_key_pem(sa_key))
    pki.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    pki.ca_key.write_bytes(_key_pem(ca_key))
    key_files = [pki.server_key, pki.admin_key, pki.service_account_key, pki.ca_key]
    if node is not None:
        for component, (cn, org) in _component_subjects(node).items():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(
                _name(cn, org),
                key,
                ca_name,
                ca_key,
                ca=False,
                usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
                sans=[],
            )
            pki.components[component] = _write_pair(directory, component, cert, key)
        key = ec.generate_private_key(ec.SECP256R1())
        serving = _issue(
            _name(node.name),
            key,
            ca_name,
            ca_key,
            ca=False,
            usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            sans=[x509.DNSName(node.name), x509.IPAddress(ipaddress.ip_address(node.address))],
        )
        pki.components["kubelet-serving"] = _write_pair(directory, "kubelet-serving", serving, key)
        key_files += [pair[1] for pair in pki.components.values()]
    for key_file in key_files:
        key_file.chmod(0o600)
    return pki


def _write_pair(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    return cert_path, key_path
