"""Payload encryption: AES-GCM with rotating keys, for everything Temporal stores.

`REFERRALS_CODEC_KEYS` is a comma-separated list of `KEYID:BASE64KEY` (32-byte keys). The
first key encrypts; every listed key still decrypts, so a key is rotated by putting the new
one first and keeping the old ones until no run needs them. The key id travels in each
payload's metadata as `encryption-key-id`.
"""

import base64
import binascii
import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from workflows.payloads import UNDECRYPTABLE_ENCODING

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
SEALED = "sealed:"  # a value sealed for storage, not a payload


class CodecKeyError(ValueError):
    """A key list that cannot be used, or a payload whose key is not in it."""


def parse_keys(spec: str, setting: str = "REFERRALS_CODEC_KEYS") -> list[tuple[str, bytes]]:
    """`KEYID:BASE64KEY,...` into (key id, 32-byte key) pairs, in order (``setting`` names the
    variable in errors: the link keys are written the same way)."""
    keys: list[tuple[str, bytes]] = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        key_id, separator, encoded = entry.partition(":")
        if not separator or not key_id:
            raise CodecKeyError(f"{setting} entries are KEYID:BASE64KEY")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CodecKeyError(f"key {key_id!r} is not valid base64") from None
        if len(key) != 32:
            raise CodecKeyError(f"key {key_id!r} has {len(key)} bytes; 32 are needed")
        if key_id in dict(keys):
            raise CodecKeyError(f"key {key_id!r} is listed twice")
        keys.append((key_id, key))
    return keys


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise CodecKeyError("no encryption key given")
        self._current_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self._decrypt(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def seal(self, text: str) -> str:
        """``text`` encrypted with the current key, as ASCII to store (a webhook secret)."""
        sealed = self._encrypt(Payload(data=text.encode()))
        return SEALED + base64.b64encode(sealed.SerializeToString()).decode()

    def unseal(self, stored: str) -> str:
        """What ``seal`` stored, read with whichever listed key sealed it."""
        if not stored.startswith(SEALED):
            return stored  # stored while no key was configured
        payload = Payload.FromString(base64.b64decode(stored[len(SEALED) :]))
        return self._decrypt(payload).data.decode()

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._current_id
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecKeyError(
                f"payload encrypted with key {key_id!r}, which is not in REFERRALS_CODEC_KEYS"
            )
        if len(payload.data) < NONCE_BYTES:
            raise CodecKeyError(f"payload is too short to have been encrypted with {key_id!r}")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise CodecKeyError(f"payload does not decrypt with key {key_id!r}") from None
        return Payload.FromString(plain)


class TolerantDecoding(PayloadCodec):
    """The worker's codec: a payload it cannot decrypt is handed on as an undecryptable
    marker, which the workflow refuses like any malformed action, instead of failing the
    workflow task on every attempt. Encoding is unchanged."""

    def __init__(self, codec: EncryptionCodec) -> None:
        self._codec = codec

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return await self._codec.encode(payloads)

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            try:
                [plain] = await self._codec.decode([payload])
            except CodecKeyError as error:
                plain = Payload(
                    metadata={"encoding": UNDECRYPTABLE_ENCODING.encode()},
                    data=str(error).encode(),
                )
            decoded.append(plain)
        return decoded


def codec_from_keys(spec: str | None) -> EncryptionCodec | None:
    """The codec for REFERRALS_CODEC_KEYS; None (no encryption) when unset or empty."""
    keys = parse_keys(spec or "")
    return EncryptionCodec(keys) if keys else None
