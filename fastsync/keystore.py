"""Java key stores read without Java: JKS, JCEKS and PKCS12 files, for the private key and
certificate chain of a TLS server (the avro source's `keystore`) and for the certificates
a TLS client trusts (the avro sink's and RpcClient's `truststore`); and the TLS contexts
made from them, as Flume's Netty server and NettyAvroRpcClient make theirs.

A JKS file (big-endian; `keytool -storetype JKS`) is: magic FEEDFEED (JCEKS: CECECECE),
version 1 or 2, an entry count, the entries, then a SHA-1 of UTF-16BE(password) + "Mighty
Aphrodite" + everything before it: its integrity check, which is how a wrong password is
told. An entry is a tag (1: private key, 2: trusted certificate), an alias (a 2-byte length
and modified UTF-8), an 8-byte timestamp, then for a key its EncryptedPrivateKeyInfo (DER)
and its certificate chain; each certificate is (version 2 only: a type string) a 4-byte
length and the DER certificate.

A JKS private key is protected by Sun's KeyProtector: the encrypted bytes are salt (20) +
data + check (20); the data is XORed with a keystream of SHA-1 blocks, each SHA-1(UTF-16BE
(password) + the previous block, the salt first); the check is SHA-1(UTF-16BE(password) +
plain key), and the plain key is a PKCS#8 PrivateKeyInfo.

Every error is a KeystoreError: one line that says what is wrong with the store (never its
password), and `key` the setting to name (the store's, or the protocol list's).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import ssl
import struct
import tempfile
from dataclasses import dataclass, field

JAVA_MAGICS = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")      # JKS, JCEKS
KEY_PROTECTOR_OID = bytes.fromhex("2b060104012a02110101")     # 1.3.6.1.4.1.42.2.17.1.1
# Java's protocol names, oldest first (SSLv3 is never offered: OpenSSL has none)
_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1, "TLSv1.2": ssl.TLSVersion.TLSv1_2,
             "TLSv1.3": ssl.TLSVersion.TLSv1_3}
PROTOCOLS = ("SSLv3",) + tuple(_VERSIONS)


class KeystoreError(ValueError):
    """A key or trust store that can't be used (missing, damaged, wrong type or password),
    or a protocol list leaving no TLS version; `key` is the setting at fault."""

    def __init__(self, message: str, key: str = "keystore"):
        super().__init__(message)
        self.key = key


# -- JKS / JCEKS --

@dataclass
class JksEntry:
    protected_key: bytes | None                            # a key entry's EncryptedPrivateKeyInfo
    certificates: list[bytes] = field(default_factory=list)  # DER: a key's chain, or one trusted


def is_java_keystore(data: bytes) -> bool:
    return data[:4] in JAVA_MAGICS


def read_jks(data: bytes, password: str | None, role: str = "keystore") -> list[JksEntry]:
    """The entries of a JKS or JCEKS file, its integrity checked with `password` (None: not
    checked, as Java loads a truststore without a password)."""
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise KeystoreError("a truncated JKS %s" % role, role)
        pos += n
        return data[pos - n:pos]

    def u4() -> int:
        return struct.unpack(">I", take(4))[0]

    def u2() -> int:
        return struct.unpack(">H", take(2))[0]

    if not is_java_keystore(data) or len(data) < 12:
        raise KeystoreError("not a JKS %s" % role, role)
    take(4)
    version, count = u4(), u4()
    if version not in (1, 2):
        raise KeystoreError("not a JKS %s (version %d)" % (role, version), role)

    def cert() -> bytes:
        if version == 2:
            take(u2())                                  # the certificate type, X.509
        return take(u4())

    entries = []
    for _ in range(count):
        tag = u4()
        take(u2())                                      # alias
        take(8)                                         # timestamp
        if tag == 1:
            key = take(u4())
            entries.append(JksEntry(key, [cert() for _ in range(u4())]))
        elif tag == 2:
            entries.append(JksEntry(None, [cert()]))
        else:
            raise KeystoreError("a JKS %s entry of kind %d (a secret key?) is not supported" % (role, tag), role)
    if password is not None:
        digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + data[:pos]).digest()
        if digest != take(20):
            raise KeystoreError("wrong %s password (its integrity check failed, or the file is damaged)" % role, role)
    return entries


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at pos: (tag, content start, content end)."""
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


def _protected_key_data(info: bytes) -> bytes:
    """EncryptedPrivateKeyInfo ::= SEQUENCE { SEQUENCE { OID, params }, OCTET STRING }."""
    tag, start, _ = _der(info, 0)
    alg_tag, alg_start, alg_end = _der(info, start)
    oid_tag, oid_start, oid_end = _der(info, alg_start)
    if tag != 0x30 or alg_tag != 0x30 or oid_tag != 0x06:
        raise KeystoreError("a key entry that is not an EncryptedPrivateKeyInfo")
    if info[oid_start:oid_end] != KEY_PROTECTOR_OID:
        raise KeystoreError("a key protected by an algorithm other than Sun's JKS KeyProtector")
    data_tag, data_start, data_end = _der(info, alg_end)
    if data_tag != 0x04:
        raise KeystoreError("a key entry without its encrypted data")
    return info[data_start:data_end]


def _unprotect(protected: bytes, password: str) -> bytes:
    """Sun's KeyProtector undone: the PKCS#8 PrivateKeyInfo."""
    pw = password.encode("utf-16-be")
    salt, data, check = protected[:20], protected[20:-20], protected[-20:]
    stream, block = bytearray(), salt
    while len(stream) < len(data):
        block = hashlib.sha1(pw + block).digest()
        stream += block
    plain = bytes(a ^ b for a, b in zip(data, stream))
    if hashlib.sha1(pw + plain).digest() != check:
        raise KeystoreError("wrong key password (the key's own check failed)")
    return plain


# -- either kind of file --

def _read_file(path: str, role: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise KeystoreError("cannot read %s %s: %s" % (role, path, exc.strerror or exc), role) from None


def _pkcs12(data: bytes, password: bytes | None, role: str):
    from cryptography.hazmat.primitives.serialization import pkcs12
    try:
        return pkcs12.load_pkcs12(data, password)
    except ValueError as exc:
        raise KeystoreError("cannot read the PKCS12 %s (wrong password?): %s" % (role, exc), role) from None


def private_key(path: str, password: str):
    """(private key, certificate, chain) of the first key entry of a keystore, as
    `cryptography` objects. The file is read as what it is (JKS, JCEKS or PKCS12), whatever
    keystore-type says, as Java's keystore loader does."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    data = _read_file(path, "keystore")
    if not is_java_keystore(data):
        p12 = _pkcs12(data, password.encode() or None, "keystore")
        if p12.key is None or p12.cert is None:
            raise KeystoreError("%s holds no private key with its certificate" % path)
        return p12.key, p12.cert.certificate, [c.certificate for c in p12.additional_certs]
    for entry in read_jks(data, password):
        if entry.protected_key is not None:
            if not entry.certificates:
                raise KeystoreError("the key entry has no certificate")
            key = load_der_private_key(_unprotect(_protected_key_data(entry.protected_key), password), None)
            certs = [x509.load_der_x509_certificate(c) for c in entry.certificates]
            return key, certs[0], certs[1:]
    raise KeystoreError("%s holds no private key with its certificate" % path)


def trusted_certificates(path: str, password: str | None, store_type: str = "JKS") -> list[bytes]:
    """The DER certificates of a truststore (JKS, JCEKS or PKCS12; a JKS file named PKCS12,
    or the reverse, is read as what it is, as Java's keystore loader does)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    data = _read_file(path, "truststore")
    if store_type.upper() not in ("JKS", "PKCS12", "JCEKS"):
        raise KeystoreError("truststore type %s is not supported (JKS, JCEKS or PKCS12)" % store_type, "truststore")
    if is_java_keystore(data):
        certs = [c for entry in read_jks(data, password, "truststore") for c in entry.certificates]
    else:
        p12 = _pkcs12(data, None if password is None else password.encode(), "truststore")
        certs = [c.certificate.public_bytes(Encoding.DER)
                 for c in ([p12.cert] if p12.cert is not None else []) + list(p12.additional_certs)]
    if not certs:
        raise KeystoreError("truststore %s holds no certificate" % path, "truststore")
    return certs


# -- TLS contexts --

def _version_range(ctx: ssl.SSLContext, exclude, include=()) -> None:
    """Offer TLS 1.2 and 1.3 (older ones never), less `exclude`, only `include` if any; Java's
    protocol names, any case."""
    exclude, include = {p.lower() for p in exclude}, {p.lower() for p in include}
    allowed = [v for name, v in _VERSIONS.items() if v >= ssl.TLSVersion.TLSv1_2
               and name.lower() not in exclude and (not include or name.lower() in include)]
    if not allowed:
        raise KeystoreError("exclude-protocols / include-protocols leave no TLS version (TLSv1.2 and TLSv1.3 are "
                            "offered; TLSv1, TLSv1.1 and SSLv3 are not)", "exclude-protocols")
    ctx.minimum_version, ctx.maximum_version = allowed[0], allowed[-1]


def server_context(keystore: str, password: str, exclude_protocols: str = "SSLv3") -> ssl.SSLContext:
    """A server TLS context with the key and chain of a keystore (the avro source's)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _version_range(ctx, exclude_protocols.replace(",", " ").split())
    load_key_chain(ctx, *private_key(keystore, password))
    return ctx


def load_key_chain(ctx: ssl.SSLContext, key, cert, chain) -> None:
    """ctx.load_cert_chain of `cryptography` objects (a private key, its certificate and chain)."""
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, PrivateFormat
    # ssl loads keys from files only: a private directory, the key encrypted with a one-off password
    one_off = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="fastsync-tls-") as tmp:
        certs, keyfile = os.path.join(tmp, "chain.pem"), os.path.join(tmp, "key.pem")
        with open(certs, "wb") as f:
            f.write(b"".join(c.public_bytes(Encoding.PEM) for c in [cert, *chain]))
        with open(keyfile, "wb") as f:
            f.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(one_off.encode())))
        ctx.load_cert_chain(certs, keyfile, one_off)


def client_context(trust_all: bool = False, truststore: str | None = None, password: str | None = None,
                   store_type: str = "JKS", exclude_protocols=("SSLv3",), include_protocols=()) -> ssl.SSLContext:
    """A client TLS context as Flume's NettyAvroRpcClient makes one: trust every certificate
    (`trust-all-certs`), those of a truststore, or the system's CAs. Like Flume's client, no
    host name check: a certificate is trusted by its chain, not by the name it carries."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if trust_all:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if truststore:
            certs = trusted_certificates(truststore, password, store_type)
            ctx.load_verify_locations(cadata="".join(ssl.DER_cert_to_PEM_cert(c) for c in certs))
            # a self-signed server certificate in the truststore is trusted as it is
            ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
        else:
            ctx.load_default_certs()
    unknown = [p for p in list(exclude_protocols) + list(include_protocols) if p not in PROTOCOLS]
    if unknown:
        raise KeystoreError("unknown protocol %s (known: %s)" % (unknown[0], " ".join(PROTOCOLS)), "exclude-protocols")
    _version_range(ctx, exclude_protocols, include_protocols)
    return ctx
