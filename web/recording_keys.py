"""The configured key that wraps each recording session's SM4 data key (R36).

The wrap is the field cipher's SM4-GCM under ``field_key``, bound to the room and session
(``recording.at_rest.key_context``): a wrapped key copied into another session does not open.
"""

from __future__ import annotations

from consult.crypto import FieldCipher
from recording.at_rest import KeyWrapper


def key_wrapper(cipher: FieldCipher) -> KeyWrapper:
    return KeyWrapper(
        wrap=lambda key, context: cipher.encrypt(key.hex(), context),
        unwrap=lambda wrapped, context: bytes.fromhex(cipher.decrypt(wrapped, context)),
    )
