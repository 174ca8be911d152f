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


class _Bits:
    """An RBSP bit reader (emulation-prevention bytes removed) for exp-Golomb fields."""

    def __init__(self, data: bytes) -> None:
        self._data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise ValueError("truncated SPS")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def h264_dimensions(annexb: bytes) -> tuple[int, int] | None:
    """Width and height from the first sequence parameter set in an Annex B access unit."""
    for nal in annexb.split(b"\x00\x00\x01"):
        if nal and nal[0] & 0x1F == 7:
            try:
                return _sps_dimensions(nal[1:])
            except ValueError:
                return None
    return None


def _sps_dimensions(sps: bytes) -> tuple[int, int]:
    r = _Bits(sps)
    profile = r.bits(8)
    r.bits(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = r.ue()
        if chroma_format == 3:
            r.bit()  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if r.bit():
                    last, following = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if following:
                            following = (last + r.se() + 256) % 256
                        last = following or last
    r.ue()  # log2_max_frame_num_minus4
    order_type = r.ue()
    if order_type == 0:
        r.ue()
    elif order_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width, height = width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0:
        raise ValueError("bad SPS dimensions")
    return width, height
