"""RTP payload -> codec bitstream, per codec, without decoding anything.

VP8 (RFC 7741): the payload descriptor is skipped by hand (aiortc's parser builds an object per
packet and cost more than the rest of recording a packet); H.264 (RFC 6184) uses aiortc's
depacketizer (start codes, STAP-A, FU-A); Opus is its own bitstream.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc.codecs.h264 import h264_depayload


def vp8_descriptor_length(payload: bytes) -> int:
    """The length of the VP8 payload descriptor at the start of ``payload``."""
    if not payload:
        raise ValueError("empty VP8 payload")
    offset = 1
    if payload[0] & 0x80:  # X: extension byte follows
        if len(payload) < 2:
            raise ValueError("truncated VP8 payload descriptor")
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                raise ValueError("truncated VP8 picture id")
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            offset += 1
    if offset > len(payload):
        raise ValueError("truncated VP8 payload descriptor")
    return offset


def vp8_depayload(payload: bytes) -> bytes:
    return payload[vp8_descriptor_length(payload) :]


def _identity(payload: bytes) -> bytes:
    return payload


def depayloader(codec: str) -> Callable[[bytes], bytes]:
    """The depayload function for ``codec`` ("vp8", "h264", "opus")."""
    if codec == "vp8":
        return vp8_depayload
    if codec == "h264":
        return h264_depayload
    return _identity
