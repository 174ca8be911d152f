"""Serialize a forwarded RTP packet for one subscriber, without building packet objects.

This is the forwarding hot path: one call per packet per subscriber. The header is packed with
``struct``; the header extensions the subscriber negotiated (RFC 8285 one-byte form) are the
Consumer's mid (constant, prebuilt), a fresh abs-send-time, the transport-wide sequence number
(when transport-cc is negotiated) and the publisher's audio level.
"""

from __future__ import annotations

import struct
import time

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800

_HEADER = struct.Struct("!BBHII")


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (what RTCP sender reports carry)."""
    return int((time.time() + NTP_UNIX_OFFSET) * 4294967296.0)


def abs_send_time(ntp: int) -> bytes:
    """The 3-byte abs-send-time value (6.18 fixed-point seconds) for an NTP time."""
    return ((ntp >> 14) & 0x00FFFFFF).to_bytes(3, "big")


class RtpWriter:
    """Writes packets with one subscriber's SSRC, payload type and extension ids."""

    __slots__ = ("_abs_id", "_layouts", "_level_id", "_mid_element", "_pt", "_ssrc", "_twcc_id")

    def __init__(
        self, *, ssrc: int, payload_type: int, extension_ids: dict[str, int], mid: str | None
    ) -> None:
        self._ssrc = ssrc
        self._pt = payload_type
        mid_id = extension_ids.get(URI_MID)
        encoded = (mid or "").encode()[:16]
        self._mid_element = (
            bytes([(mid_id << 4) | (len(encoded) - 1)]) + encoded if mid_id and encoded else b""
        )
        self._abs_id = extension_ids.get(URI_ABS_SEND_TIME, 0)
        self._level_id = extension_ids.get(URI_AUDIO_LEVEL, 0)
        self._twcc_id = extension_ids.get(URI_TRANSPORT_CC, 0)
        # (with a transport-wide number, with an audio level) -> how the header is packed
        self._layouts: dict[tuple[bool, bool], tuple[struct.Struct, int] | None] = {}

    @property
    def transport_cc(self) -> bool:
        """Whether packets carry a transport-wide sequence number."""
        return bool(self._twcc_id)

    def _layout(self, twcc: bool, level: bool) -> tuple[struct.Struct, int] | None:
        """The header and extension block of packets with these elements as one struct (the
        fixed header, then the one-byte-header extension block: mid, abs-send-time,
        transport-wide number, audio level, padded to 32 bits), and its length in words;
        None when there is no extension."""
        fmt = ""
        size = 0
        if self._mid_element:
            fmt += f"{len(self._mid_element)}s"
            size += len(self._mid_element)
        if self._abs_id:
            fmt += "B3s"
            size += 4
        if twcc:
            fmt += "BH"
            size += 3
        if level:
            fmt += "BB"
            size += 2
        if not size:
            return None
        words = (size + 3) // 4
        return struct.Struct(f"!BBHIIHH{fmt}{words * 4 - size}x"), words

    def write(
        self,
        *,
        sequence_number: int,
        timestamp: int,
        marker: int,
        payload: bytes,
        padding_size: int,
        send_time: bytes,
        audio_level: tuple[bool, int] | None,
        transport_seq: int | None = None,
    ) -> bytes:
        twcc = transport_seq is not None and bool(self._twcc_id)
        level = bool(self._level_id) and audio_level is not None
        key = (twcc, level)
        try:
            layout = self._layouts[key]
        except KeyError:
            layout = self._layouts[key] = self._layout(twcc, level)
        first = 0x80
        if padding_size:
            first |= 0x20
        second = (marker << 7) | self._pt
        if layout is None:
            header = _HEADER.pack(first, second, sequence_number, timestamp, self._ssrc)
        else:
            packer, words = layout
            values: list[object] = [
                first | 0x10, second, sequence_number, timestamp, self._ssrc, 0xBEDE, words
            ]  # fmt: skip
            if self._mid_element:
                values.append(self._mid_element)
            if self._abs_id:
                values.append((self._abs_id << 4) | 2)
                values.append(send_time)
            if twcc:
                values.append((self._twcc_id << 4) | 1)
                values.append(transport_seq)
            if level:
                values.append(self._level_id << 4)
                values.append((0x80 if audio_level[0] else 0) | audio_level[1])  # type: ignore[index]
            header = packer.pack(*values)
        if padding_size:
            padding = b"\x00" * (padding_size - 1) + bytes([padding_size])
            return header + payload + padding
        return header + payload
