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
_EXTENSION_HEAD = struct.Struct("!HH")


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (what RTCP sender reports carry)."""
    return int((time.time() + NTP_UNIX_OFFSET) * 4294967296.0)


def abs_send_time(ntp: int) -> bytes:
    """The 3-byte abs-send-time value (6.18 fixed-point seconds) for an NTP time."""
    return ((ntp >> 14) & 0x00FFFFFF).to_bytes(3, "big")


class RtpWriter:
    """Writes packets with one subscriber's SSRC, payload type and extension ids."""

    __slots__ = ("_abs_id", "_level_id", "_mid_element", "_pt", "_ssrc", "_twcc_id")

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

    @property
    def transport_cc(self) -> bool:
        """Whether packets carry a transport-wide sequence number."""
        return bool(self._twcc_id)

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
        extension = self._mid_element
        if self._abs_id:
            extension += bytes([(self._abs_id << 4) | 2]) + send_time
        if transport_seq is not None and self._twcc_id:
            extension += bytes([(self._twcc_id << 4) | 1]) + transport_seq.to_bytes(2, "big")
        if self._level_id and audio_level is not None:
            extension += bytes(
                [self._level_id << 4, (0x80 if audio_level[0] else 0) | audio_level[1]]
            )
        first = 0x80
        if padding_size:
            first |= 0x20
        if extension:
            first |= 0x10
            extension += b"\x00" * (-len(extension) % 4)
            extension = _EXTENSION_HEAD.pack(0xBEDE, len(extension) // 4) + extension
        header = _HEADER.pack(
            first, (marker << 7) | self._pt, sequence_number, timestamp, self._ssrc
        )
        if padding_size:
            padding = b"\x00" * (padding_size - 1) + bytes([padding_size])
            return header + extension + payload + padding
        return header + extension + payload
