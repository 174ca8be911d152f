"""VP8 payload descriptor numbering (RFC 7741 section 4.2), rewritten across simulcast switches.

Each simulcast layer has its own picture ids and TL0PICIDX. A receiver orders frames by picture
id (libwebrtc drops a frame whose id is not newer than the last decoded one, keyframe or not), so
a subscriber switched to another layer must see these numbers continue, as mediasoup does.
"""

from __future__ import annotations

import struct

#: The descriptor's first five bytes as libwebrtc writes them (X, then I with a 15-bit picture
#: id, then L): the X byte, the I/L/T/K byte, M and the picture id, TL0PICIDX.
_USUAL_HEAD = struct.Struct("!BBHB")


def descriptor_fields(payload: bytes) -> tuple[int, int, int]:
    """(picture id offset, its length in bytes (0: none, 1: 7-bit, 2: 15-bit), TL0PICIDX offset
    or -1) in a VP8 RTP payload."""
    if len(payload) < 2 or not payload[0] & 0x80:  # no X: no extended control bits
        return 0, 0, -1
    ext = payload[1]
    offset = 2
    pic_offset, pic_len = 0, 0
    if ext & 0x80:  # I
        if len(payload) <= offset:
            return 0, 0, -1
        pic_offset = offset
        pic_len = 2 if payload[offset] & 0x80 else 1
        offset += pic_len
    tl0_offset = -1
    if ext & 0x40:  # L
        tl0_offset = offset if len(payload) > offset else -1
    if pic_len and len(payload) < pic_offset + pic_len:
        return 0, 0, tl0_offset
    return pic_offset, pic_len, tl0_offset


def picture_id(payload: bytes, offset: int, length: int) -> int:
    if length == 2:
        return ((payload[offset] & 0x7F) << 8) | payload[offset + 1]
    return payload[offset] & 0x7F


class Vp8Numbering:
    """Keeps one subscriber's picture ids and TL0PICIDX continuous across layer switches."""

    __slots__ = ("_last_pic", "_last_tl0", "_pic_delta", "_tl0_delta")

    def __init__(self) -> None:
        self._pic_delta = 0
        self._tl0_delta = 0
        self._last_pic: int | None = None
        self._last_tl0: int | None = None

    def rebase(self, payload: bytes) -> None:
        """``payload`` (a keyframe's first packet) starts a new source: continue after the
        last numbers sent."""
        pic_offset, pic_len, tl0_offset = descriptor_fields(payload)
        if pic_len and self._last_pic is not None:
            mask = 0x7FFF if pic_len == 2 else 0x7F
            self._pic_delta = (self._last_pic + 1 - picture_id(payload, pic_offset, pic_len)) & mask
        if tl0_offset >= 0 and self._last_tl0 is not None:
            self._tl0_delta = (self._last_tl0 + 1 - payload[tl0_offset]) & 0xFF

    def rewrite(self, payload: bytes) -> bytes:
        """``payload`` with its picture id and TL0PICIDX renumbered (one call per forwarded
        packet per subscriber: the usual descriptor is read and written in one step)."""
        if (
            len(payload) >= 5
            and payload[0] & 0x80
            and payload[1] & 0xC0 == 0xC0
            and payload[2] & 0x80
        ):
            pic = ((((payload[2] & 0x7F) << 8) | payload[3]) + self._pic_delta) & 0x7FFF
            tl0 = (payload[4] + self._tl0_delta) & 0xFF
            self._last_pic = pic
            self._last_tl0 = tl0
            return (
                _USUAL_HEAD.pack(payload[0], payload[1], 0x8000 | pic, tl0)
                + memoryview(payload)[5:]
            )
        return self._rewrite_any(payload)

    def _rewrite_any(self, payload: bytes) -> bytes:
        pic_offset, pic_len, tl0_offset = descriptor_fields(payload)
        if not pic_len and tl0_offset < 0:
            return payload
        out = bytearray(payload)
        if pic_len == 2:
            pic = (picture_id(payload, pic_offset, 2) + self._pic_delta) & 0x7FFF
            out[pic_offset] = 0x80 | (pic >> 8)
            out[pic_offset + 1] = pic & 0xFF
            self._last_pic = pic
        elif pic_len == 1:
            pic = (picture_id(payload, pic_offset, 1) + self._pic_delta) & 0x7F
            out[pic_offset] = pic
            self._last_pic = pic
        if tl0_offset >= 0:
            tl0 = (payload[tl0_offset] + self._tl0_delta) & 0xFF
            out[tl0_offset] = tl0
            self._last_tl0 = tl0
        return bytes(out)
