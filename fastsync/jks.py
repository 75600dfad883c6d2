"""Java's JKS keystore (the `keystore-type = JKS` of Flume's TLS keys), read without Java.

The file (big-endian): magic FEEDFEED, version 1 or 2, an entry count, the entries, then a
SHA-1 of UTF-16BE(password) + "Mighty Aphrodite" + everything before it (its integrity
check). An entry is a tag (1: private key, 2: trusted certificate), an alias (a 2-byte
length and modified UTF-8), an 8-byte timestamp, then for a key: its EncryptedPrivateKeyInfo
(DER) and its certificate chain; each certificate is (version 2 only: a type string) a
4-byte length and the DER certificate.

The key is protected by Sun's KeyProtector: the encrypted bytes are salt (20) + data + check
(20); the data is XORed with a keystream of SHA-1 blocks, each SHA-1(UTF-16BE(password) +
the previous block, the salt first); the check is SHA-1(UTF-16BE(password) + plain key), and
the plain key is a PKCS#8 PrivateKeyInfo.
"""
from __future__ import annotations

import hashlib
import struct

MAGIC = 0xFEEDFEED
KEY_PROTECTOR_OID = bytes.fromhex("2b060104012a02110101")     # 1.3.6.1.4.1.42.2.17.1.1


class KeystoreError(ValueError):
    pass


def is_jks(data: bytes) -> bool:
    return data[:4] == b"\xfe\xed\xfe\xed"


def _der(data: bytes, pos: int) -> tuple[int, int, int]:
    """The DER element at pos: (tag, content start, content end)."""
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    return tag, pos, pos + n


def _encrypted_key(info: bytes) -> bytes:
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


def _unprotect(protected: bytes, password: bytes) -> bytes:
    salt, data, check = protected[:20], protected[20:-20], protected[-20:]
    stream, block = bytearray(), salt
    while len(stream) < len(data):
        block = hashlib.sha1(password + block).digest()
        stream += block
    plain = bytes(a ^ b for a, b in zip(data, stream))
    if hashlib.sha1(password + plain).digest() != check:
        raise KeystoreError("the key password is wrong")
    return plain


def load_jks(data: bytes, password: str):
    """(private key, certificate, chain) of the first key entry, as `cryptography` objects;
    KeystoreError when the file is not a JKS keystore, the password is wrong, or it holds
    no key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    pw = password.encode("utf-16-be")
    if len(data) < 32 or not is_jks(data):
        raise KeystoreError("not a JKS keystore")
    if hashlib.sha1(pw + b"Mighty Aphrodite" + data[:-20]).digest() != data[-20:]:
        raise KeystoreError("the keystore password is wrong (or the file is damaged)")
    version, count = struct.unpack_from(">II", data, 4)
    pos = 12

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data) - 20:
            raise KeystoreError("a truncated JKS keystore")
        pos += n
        return data[pos - n:pos]

    def cert() -> bytes:
        if version == 2:
            take(struct.unpack(">H", take(2))[0])          # the certificate type, X.509
        return take(struct.unpack(">I", take(4))[0])

    for _ in range(count):
        tag = struct.unpack(">I", take(4))[0]
        take(struct.unpack(">H", take(2))[0])              # alias
        take(8)                                            # timestamp
        if tag == 1:
            key = take(struct.unpack(">I", take(4))[0])
            chain = [cert() for _ in range(struct.unpack(">I", take(4))[0])]
            plain = _unprotect(_encrypted_key(key), pw)
            certs = [x509.load_der_x509_certificate(c) for c in chain]
            if not certs:
                raise KeystoreError("the key entry has no certificate")
            return load_der_private_key(plain, None), certs[0], certs[1:]
        if tag == 2:
            cert()
        else:
            raise KeystoreError("an entry of unknown kind %d" % tag)
    raise KeystoreError("no private key entry")
