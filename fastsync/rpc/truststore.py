"""TLS client contexts as Flume's RPC client makes them: trust every certificate
(`trust-all-certs`), the certificates of a Java truststore (`truststore`, JKS or PKCS12,
read here without Java), or the system's CAs. Like Flume's client, no host name check: a
certificate is trusted by its chain, not by the name it carries.

A JKS file (Java's `keytool -storetype JKS`) is: magic FEEDFEED, version, entry count; each
entry a tag (1 private key with its certificate chain, 2 trusted certificate), alias,
timestamp, and DER certificates; then a SHA-1 over the password (UTF-16BE), the words
"Mighty Aphrodite" and everything before it, which is how a wrong password is told.
"""
from __future__ import annotations

import hashlib
import ssl
import struct

# Java's protocol names, oldest first (SSLv3 is never offered: OpenSSL has none)
_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
             "TLSv1.3": ssl.TLSVersion.TLSv1_3}
PROTOCOLS = ("SSLv3",) + tuple(_VERSIONS)


class TrustStoreError(ValueError):
    """A truststore that can't be read: missing, wrong type, wrong password."""


def _jks_certificates(data: bytes, password: str | None) -> list[bytes]:
    """The DER certificates of a JKS (or JCEKS) keystore."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise TrustStoreError("truncated JKS keystore")
        out = data[pos:pos + n]
        pos += n
        return out

    def u4() -> int:
        return struct.unpack(">I", take(4))[0]

    magic, version, count = struct.unpack(">III", take(12))
    if magic not in (0xFEEDFEED, 0xCECECECE) or version not in (1, 2):
        raise TrustStoreError("not a JKS keystore")

    def cert() -> bytes:
        if version == 2:
            take(struct.unpack(">H", take(2))[0])       # the certificate type, X.509
        return take(u4())

    certs = []
    for _ in range(count):
        tag = u4()
        take(struct.unpack(">H", take(2))[0])           # alias
        take(8)                                         # timestamp
        if tag == 1:
            take(u4())                                  # the protected private key
            certs += [cert() for _ in range(u4())]
        elif tag == 2:
            certs.append(cert())
        else:
            raise TrustStoreError("JKS entry of kind %d (a secret key?) is not supported" % tag)
    if password is not None:
        digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + data[:pos]).digest()
        if digest != data[pos:pos + 20]:
            raise TrustStoreError("wrong truststore password (keystore integrity check failed)")
    return certs


def _pkcs12_certificates(data: bytes, password: str | None) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
    try:
        p12 = pkcs12.load_pkcs12(data, password.encode() if password is not None else None)
    except ValueError as exc:
        raise TrustStoreError("cannot read the PKCS12 truststore (wrong password?): %s" % exc) from None
    certs = ([p12.cert] if p12.cert is not None else []) + list(p12.additional_certs)
    return [c.certificate.public_bytes(Encoding.DER) for c in certs]


def truststore_certificates(path: str, password: str | None, store_type: str = "JKS") -> list[bytes]:
    """The DER certificates of a Java truststore; a JKS file named PKCS12 (or the reverse) is
    read as what it is, as Java's keystore loader does."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TrustStoreError("cannot read truststore %s: %s" % (path, exc.strerror or exc)) from None
    if store_type.upper() not in ("JKS", "PKCS12", "JCEKS"):
        raise TrustStoreError("truststore type %s is not supported (JKS, JCEKS or PKCS12)" % store_type)
    certs = _jks_certificates(data, password) if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce") \
        else _pkcs12_certificates(data, password)
    if not certs:
        raise TrustStoreError("truststore %s holds no certificate" % path)
    return certs


def client_context(trust_all: bool = False, truststore: str | None = None, password: str | None = None,
                   store_type: str = "JKS", exclude_protocols=("SSLv3",), include_protocols=()) -> ssl.SSLContext:
    """A client TLS context as Flume's NettyAvroRpcClient makes one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if trust_all:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if truststore:
            certs = truststore_certificates(truststore, password, store_type)
            ctx.load_verify_locations(cadata="".join(ssl.DER_cert_to_PEM_cert(c) for c in certs))
            # a self-signed server certificate in the truststore is trusted as it is
            ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
        else:
            ctx.load_default_certs()
    unknown = [p for p in list(exclude_protocols) + list(include_protocols) if p not in PROTOCOLS]
    if unknown:
        raise TrustStoreError("unknown protocol %s (known: %s)" % (unknown[0], " ".join(PROTOCOLS)))
    allowed = [v for name, v in _VERSIONS.items() if v >= ssl.TLSVersion.TLSv1_2
               and name not in exclude_protocols and (not include_protocols or name in include_protocols)]
    if not allowed:
        raise TrustStoreError("exclude-protocols / include-protocols leave no TLS version (TLSv1.2 and TLSv1.3 are "
                              "offered; TLSv1, TLSv1.1 and SSLv3 are not)")
    ctx.minimum_version, ctx.maximum_version = allowed[0], allowed[-1]
    return ctx
