"""One track's segment files and its manifest, written as frames come (on a writer thread).

Each segment is a WebM (VP8, Opus) or Matroska (H.264) file of about ``segment_s`` seconds that
plays on its own: video segments begin with a keyframe. Frames are muxed as they are (PyAV,
no codec opened), one Matroska cluster per frame and flushed at once, so that a process killed
mid-segment leaves a file readable up to the frame before its last. When a segment closes its
SM3 digest, size, sequence and RTP-time range, packet counts and the publisher's sender
reports are appended to ``manifest.jsonl``, each line chained to the one before (see
``recording/manifest.py``), and the file becomes read-only.
"""

from __future__ import annotations

import fractions
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import av

from .assembler import Frame, unwrap
from .at_rest import EncryptedWriter
from .chain import GENESIS, link, sm3_file
from .depacketize import h264_dimensions

logger = logging.getLogger(__name__)

MS = fractions.Fraction(1, 1000)
#: At most this many sender reports kept per segment entry (about one a second arrives).
SR_PER_SEGMENT = 16
#: At most this many lost ranges named per segment entry (the count is always exact).
GAPS_PER_SEGMENT = 32
#: A video segment that found no keyframe to end on by this many times its length ends anyway
#: (the next one then starts on the first keyframe).
FORCE_ROTATE_FACTOR = 3
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

CONTAINERS = {
    "vp8": ("webm", ".webm"),
    "opus": ("webm", ".webm"),
    "h264": ("matroska", ".mkv"),
}


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 9.1)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


class ManifestWriter:
    """Appends chained JSON lines to a manifest file, each one flushed and fsynced."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")  # closed in close()
        self._sync = sync
        self.head = GENESIS
        self.lines = 0

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        record = dict(record)
        record["chain"] = link(self.head, record)
        self._file.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        self._file.flush()  # a killed process loses nothing written so far
        if self._sync:  # ... and a crashed machine nothing either
            os.fsync(self._file.fileno())
        self.head = record["chain"]
        self.lines += 1
        return record

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class TrackWriter:
    """Segments of one track. Not thread-safe: one writer thread calls every method."""

    def __init__(
        self,
        directory: Path,
        header: dict[str, Any],
        *,
        segment_s: float,
        request_keyframe: Any,
        data_key: bytes | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=False)
        self._data_key = data_key
        self._sink: EncryptedWriter | None = None
        self.kind = str(header["kind"])
        self.codec = str(header["codec"]).lower()
        self.clock_rate = int(header["clock_rate"])
        self._format, self._suffix = CONTAINERS.get(self.codec, ("matroska", ".mkv"))
        self._segment_ms = int(segment_s * 1000)
        self._request_keyframe = request_keyframe
        self.manifest = ManifestWriter(directory / "manifest.jsonl")
        self.manifest.append({"type": "track", **header, "started_at": time.time()})
        self._container: Any = None
        self._stream: Any = None
        self._segment: dict[str, Any] | None = None
        self._index = 0
        self._first_ts: int | None = None
        self._last_pts = -1
        self._waiting_keyframe = self.kind == "video"
        self._rotate_asked = False
        self._dimensions: tuple[int, int] | None = None
        self._reports: list[tuple[int, int]] = []  # (ntp, 32-bit rtp) not yet placed
        self.frames = 0
        self.incomplete_frames = 0
        self.skipped_packets = 0  # video before a keyframe: not decodable on its own
        self.segments = 0
        self.mux_errors = 0

    # --- frames ------------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        if self._first_ts is None:
            self._first_ts = frame.timestamp
        pts = round((frame.timestamp - self._first_ts) * 1000 / self.clock_rate)
        data = b"".join(frame.payloads)
        packets = frame.packets
        keyframe = self.kind != "video" or (frame.starts_keyframe and frame.complete)
        if self.kind == "video":
            if self._waiting_keyframe and not keyframe:
                self.skipped_packets += packets
                return
            if keyframe:
                found = vp8_dimensions(data) if self.codec == "vp8" else h264_dimensions(data)
                self._dimensions = found or self._dimensions
        if self._segment is not None and self._should_rotate(pts, keyframe):
            self._close_segment()
        if self._segment is None:
            if self.kind == "video" and not keyframe:
                self.skipped_packets += packets
                self._ask_keyframe()
                return
            self._open_segment(pts, frame)
        self._waiting_keyframe = False
        if pts <= self._last_pts:
            pts = self._last_pts + 1  # the muxer needs rising times; a 1 ms nudge
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.pts = packet.dts = pts
        packet.time_base = MS
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except av.error.FFmpegError:  # the muxer refused this frame: count it, go on
            self.mux_errors += 1
            return
        self._last_pts = pts
        segment = self._segment
        assert segment is not None
        segment["frames"] += 1
        segment["packets"] += packets
        segment["last_seq"] = frame.last_seq
        segment["last_rtp"] = frame.timestamp
        segment["last_pts_ms"] = pts
        segment["arrival_last"] = frame.arrival
        self.frames += 1
        if not frame.complete:
            self.incomplete_frames += 1
            segment["incomplete_frames"] += 1

    def _should_rotate(self, pts: int, keyframe: bool) -> bool:
        assert self._segment is not None
        elapsed = pts - self._segment["first_pts_ms"]
        if elapsed < self._segment_ms:
            return False
        if self.kind != "video" or keyframe:
            return True
        self._ask_keyframe()
        if elapsed >= self._segment_ms * FORCE_ROTATE_FACTOR:
            self._waiting_keyframe = True  # the next segment starts on a keyframe
            return True
        return False

    def _ask_keyframe(self) -> None:
        if not self._rotate_asked:
            self._rotate_asked = True
            self._request_keyframe()

    def resumed(self) -> None:
        """The Producer forwards again after a pause: video needs a keyframe to go on."""
        if self.kind == "video":
            self._waiting_keyframe = True
            self._rotate_asked = False
            self._ask_keyframe()

    def lost(self, first_seq: int, last_seq: int) -> None:
        if self._segment is None:
            return  # before the first segment: counted in the track's totals only
        self._segment["lost"] += last_seq - first_seq + 1
        gaps = self._segment["gaps"]
        if len(gaps) < GAPS_PER_SEGMENT:
            gaps.append([first_seq, last_seq])

    def sender_report(self, ntp: int, rtp_timestamp: int) -> None:
        self._reports.append((ntp, rtp_timestamp))
        self._place_reports()

    def _place_reports(self) -> None:
        """Attach pending sender reports to the open segment, as (unix time, extended RTP)."""
        if self._segment is None or self._first_ts is None:
            return
        reference = self._segment["last_rtp"]
        for ntp, rtp in self._reports:
            extended = unwrap(rtp, reference, 32)
            if len(self._segment["sender_reports"]) < SR_PER_SEGMENT:
                self._segment["sender_reports"].append([ntp_to_unix(ntp), extended])
        self._reports.clear()

    # --- segments ----------------------------------------------------------------------------

    def _open_segment(self, pts: int, frame: Frame) -> None:
        self._index += 1
        name = f"{self._index:06d}{self._suffix}"
        target: Any = str(self.directory / name)
        if self._data_key is not None:  # SM4-CTR at rest (R36): no plain byte reaches the disk
            self._sink = target = EncryptedWriter(self.directory / name, self._data_key)
        container = av.open(
            target,
            "w",
            format=self._format,
            # one cluster per frame, written through at once: a kill loses at most one frame
            options={"cluster_size_limit": "1", "flush_packets": "1"},
        )
        if self.kind == "video":
            width, height = self._dimensions or (0, 0)
            stream = container.add_mux_stream(self.codec, width=width, height=height)
        else:
            stream = container.add_mux_stream(self.codec, rate=self.clock_rate)
        stream.time_base = MS
        self._container, self._stream = container, stream
        self._rotate_asked = False
        self._segment = {
            "type": "segment",
            "index": self._index,
            "file": name,
            "frames": 0,
            "packets": 0,
            "incomplete_frames": 0,
            "lost": 0,
            "gaps": [],
            "first_seq": frame.first_seq,
            "last_seq": frame.last_seq,
            "first_rtp": frame.timestamp,
            "last_rtp": frame.timestamp,
            "first_pts_ms": pts,
            "last_pts_ms": pts,
            "arrival_first": frame.arrival,
            "arrival_last": frame.arrival,
            "sender_reports": [],
        }
        self._place_reports()

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        container, self._container = self._container, None
        if segment is None or container is None:
            return
        container.close()
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()
        path = self.directory / segment["file"]
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        segment["sm3"], segment["size"] = sm3_file(path)  # over the stored (encrypted) bytes
        os.chmod(path, 0o400)  # sealed: nothing here rewrites a closed segment
        self.manifest.append(segment)
        self.segments += 1

    def close(self, totals: dict[str, Any]) -> None:
        """Close the open segment and end the manifest with the track's totals."""
        try:
            self._close_segment()
        finally:
            self.manifest.append(
                {
                    "type": "end",
                    "segments": self.segments,
                    "frames": self.frames,
                    "incomplete_frames": self.incomplete_frames,
                    "skipped_packets": self.skipped_packets,
                    "ended_at": time.time(),
                    **totals,
                }
            )
            self.manifest.close()
