"""Key material for the TLS tests (and benches) of the hops: Java keystores and truststores
made by the real `keytool`, as Flume's users make them, and a PEM certificate with its key
for the flight hop (gRPC reads PEM)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from pathlib import Path


def keystore(tmp: Path, name: str = "server", storetype: str | None = "PKCS12", password: str = "secret1") -> Path:
    """A keystore with a new self-signed key pair (keytool; storetype None: keytool's default)."""
    path = tmp / ("%s.%s" % (name, (storetype or "default").lower()))
    subprocess.run(["keytool", "-genkeypair", "-alias", name, "-keyalg", "EC", "-groupname", "secp256r1", "-validity", "2",
                    "-dname", "CN=%s" % name, "-keystore", str(path), "-storepass", password, "-keypass", password]
                   + (["-storetype", storetype] if storetype else []), check=True, capture_output=True, timeout=60)
    return path


def truststore(tmp: Path, store: Path, alias: str = "server", storetype: str = "JKS", password: str = "trust12",
               store_password: str = "secret1") -> Path:
    """A truststore holding the certificate of `store`'s key pair (keytool export and import)."""
    cert = tmp / (alias + ".cer")
    subprocess.run(["keytool", "-exportcert", "-alias", alias, "-keystore", str(store), "-storepass", store_password,
                    "-file", str(cert)], check=True, capture_output=True, timeout=60)
    path = tmp / ("trust-%s.%s" % (alias, storetype.lower()))
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", alias, "-file", str(cert), "-keystore", str(path),
                    "-storetype", storetype, "-storepass", password], check=True, capture_output=True, timeout=60)
    return path


def self_signed_certificate(common_name: str = "fastsync test"):
    """A new EC key and a self-signed certificate of it for 127.0.0.1, valid a day
    (`cryptography` objects)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def self_signed_pem(directory: Path, common_name: str = "fastsync flight test") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM, not encrypted: gRPC reads it so)."""
    from cryptography.hazmat.primitives import serialization
    key, cert = self_signed_certificate(common_name)
    directory.mkdir(parents=True, exist_ok=True)
    pem, keypem = directory / "cert.pem", directory / "key.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keypem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return pem, keypem
