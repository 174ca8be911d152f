"""Does this RTP payload start a keyframe? For VP8 (RFC 7741) and H.264 (RFC 6184).

A Consumer that starts or resumes forwarding video waits for such a packet, so the subscriber's
decoder never gets a picture it cannot decode.
"""

from __future__ import annotations


def vp8_keyframe_start(payload: bytes) -> bool:
    if len(payload) < 1:
        return False
    first = payload[0]
    start_of_partition = first & 0x10
    partition_index = first & 0x07
    if not start_of_partition or partition_index != 0:
        return False
    offset = 1
    if first & 0x80:  # X: extended control bits
        if len(payload) < 2:
            return False
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                return False
            offset += 2 if payload[offset] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            offset += 1
        if ext & 0x30:  # T or K: TID/KEYIDX
            offset += 1
    if len(payload) <= offset:
        return False
    return (payload[offset] & 0x01) == 0  # P bit clear: a key frame


_H264_KEY_NALS = (5, 7)  # IDR slice, sequence parameter set


def h264_keyframe_start(payload: bytes) -> bool:
    if len(payload) < 2:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, then the NAL unit, repeated
        offset = 1
        while offset + 2 < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            if payload[offset + 2] & 0x1F in _H264_KEY_NALS:
                return True
            offset += 2 + size
        return False
    if nal_type == 28:  # FU-A: the start fragment carries the original type
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in _H264_KEY_NALS
    return False


def keyframe_start(mime_type: str, payload: bytes) -> bool:
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_keyframe_start(payload)
    if mime == "video/h264":
        return h264_keyframe_start(payload)
    return True  # a codec we do not parse: do not hold it back
