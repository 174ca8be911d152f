"""The recording Consumer: one per Producer, writing what the Producer forwards, untranscoded.

It is a sink of the media graph (``media.graph.Sink``), attached to its Producer by the Router
like the subscribers' Consumers: it sees exactly the packets they see (those of the lowest
simulcast layer). On the event loop it only appends each packet to a bounded deque;
a writer thread per track takes them in batches every :data:`BATCH_S` (waking a thread per
packet would cost more than the recording itself), reorders them into frames (``assembler``)
and muxes them into segments (``segments``), so file I/O and muxing never block the loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiortc.rtp import RtpPacket

from media.graph import Source
from media.keyframes import keyframe_start

from .assembler import FrameAssembler
from .depacketize import depayloader
from .segments import TrackWriter

logger = logging.getLogger(__name__)

#: Packets waiting for the writer thread; beyond this they are dropped and counted (about 40 s
#: of a 1 Mbps video stream: only a stalled disk gets there).
QUEUE_LIMIT = 4096
#: How long a hole in the sequence is waited for (a retransmission may fill it).
HOLD_S = 0.5
#: The writer thread takes what arrived this often.
BATCH_S = 0.05


class RecordingConsumer:
    """Records one Producer into ``directory`` (segments and ``manifest.jsonl``)."""

    def __init__(
        self,
        producer: Source,
        directory: Path,
        *,
        room_id: str,
        session_id: str,
        segment_s: float,
        data_key: bytes | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.producer = producer
        self._data_key = data_key
        self.directory = directory
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._stop = threading.Event()
        self._closed = False
        self.dropped = 0
        self.failed: str | None = None
        codec = producer.codec
        self._header = {
            "track": producer.id,
            "room": room_id,
            "session": session_id,
            "participant_id": producer.app_data.get("participant_id"),
            "kind": producer.kind,
            "codec": codec.mimeType.split("/")[-1].lower(),
            "clock_rate": codec.clockRate,
            "channels": codec.channels,
        }
        self._segment_s = segment_s
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{producer.id[:8]}", daemon=True
        )
        self._thread.start()
        producer.request_keyframe()  # the recording starts on a keyframe

    @property
    def closed(self) -> bool:
        return self._closed

    # --- on the event loop (a media.graph.Sink) ---------------------------------------------

    #: the lowest simulcast layer (always sent) is recorded
    layers = (0,)
    #: a recorder asks the publisher for no particular bitrate
    estimate = None

    async def on_rtp(self, packet: RtpPacket, layer: int, ntp: int, send_time: bytes) -> None:
        if layer == 0:
            self._put(("rtp", packet, time.monotonic(), time.time()))

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        self._put(("sr", ntp_timestamp, rtp_timestamp))

    def on_resume(self) -> None:
        self._put(("resume",))

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            return
        if len(self._queue) >= QUEUE_LIMIT:
            self.dropped += 1
        else:
            self._queue.append(item)  # deque appends are atomic: no lock, no wake-up

    def _request_keyframe(self) -> None:
        """From the writer thread: ask the publisher for a keyframe (on the loop)."""
        try:
            self._loop.call_soon_threadsafe(self._keyframe_on_loop)
        except RuntimeError:  # the loop is gone: we are closing anyway
            pass

    def _keyframe_on_loop(self) -> None:
        if not self._closed and not self.producer.closed:
            self.producer.request_keyframe()

    async def close(self) -> None:
        """Finish the open segment and the manifest. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        await self._loop.run_in_executor(None, self._thread.join)

    # --- on the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            writer = TrackWriter(
                self.directory,
                self._header,
                segment_s=self._segment_s,
                request_keyframe=self._request_keyframe,
                data_key=self._data_key,
            )
        except Exception as exc:
            logger.exception("recording could not start", extra={"track": self.producer.id})
            self.failed = type(exc).__name__
            self._stop.wait()
            self._queue.clear()
            return
        mime = self.producer.codec.mimeType
        assembler = FrameAssembler(
            writer.write,
            depayload=depayloader(str(self._header["codec"])),
            starts_keyframe=lambda payload: keyframe_start(mime, payload),
            per_packet_frames=self.producer.kind == "audio",
            hold_s=HOLD_S,
            on_lost=writer.lost,
        )
        try:
            self._loop_items(assembler, writer)
        except Exception as exc:  # keep the loop's queue drained; say what failed
            logger.exception("recording failed", extra={"track": self.producer.id})
            self.failed = type(exc).__name__
            self._stop.wait()
            self._queue.clear()
        finally:
            try:
                writer.close(
                    {
                        "packets": assembler.packets,
                        "lost": assembler.lost,
                        "duplicates": assembler.duplicates,
                        "late": assembler.late,
                        "malformed": assembler.malformed,
                        "mux_errors": writer.mux_errors,
                        "dropped": self.dropped,
                        "failed": self.failed,
                    }
                )
            except Exception:
                logger.exception("recording could not close", extra={"track": self.producer.id})

    def _loop_items(self, assembler: FrameAssembler, writer: TrackWriter) -> None:
        queue = self._queue
        while True:
            stopping = self._stop.wait(BATCH_S)
            while queue:
                item = queue.popleft()
                kind = item[0]
                if kind == "rtp":
                    assembler.add(item[1], item[2], item[3])
                elif kind == "sr":
                    writer.sender_report(item[1], item[2])
                else:  # "resume"
                    assembler.restart(time.monotonic())
                    writer.resumed()
            if stopping:
                assembler.release(time.monotonic(), flush=True)
                return
            assembler.release(time.monotonic())


def recording_tap(producer: Source, options: dict[str, Any]) -> RecordingConsumer | None:
    """The ``media.graph.TapFactory`` of this package: a recorder when the room is recorded.

    ``options["recording"]`` (from :meth:`recording.session.SessionRecording.tap_options`):
    ``dir`` (the session directory), ``room``, ``session``, ``segment_s``, ``data_key`` (hex:
    the session's SM4 key; segments are then encrypted at rest).
    """
    spec = options.get("recording")
    if not isinstance(spec, dict):
        return None
    if producer.codec.mimeType.split("/")[-1].lower() not in ("vp8", "h264", "opus"):
        logger.warning("codec not recorded", extra={"codec": producer.codec.mimeType})
        return None
    return RecordingConsumer(
        producer,
        Path(spec["dir"]) / "tracks" / producer.id,
        room_id=str(spec["room"]),
        session_id=str(spec["session"]),
        segment_s=float(spec.get("segment_s", 5.0)),
        data_key=bytes.fromhex(spec["data_key"]) if spec.get("data_key") else None,
    )
