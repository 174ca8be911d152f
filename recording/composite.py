"""The playback composite of a sealed session: one MP4, a grid of the video tracks over time
and the mixed audio, built with ffmpeg (through ffmpeg-python) in a background job.

Alignment: every track's frames carry RTP timestamps; the publisher's RTCP sender reports map
them to its wall clock. A participant's clock is then mapped to the server's by the smallest
(arrival - sent) difference over its tracks, so one participant's audio and video keep the
offset they were captured with (lip sync) and participants line up with the session. A track
without any sender report falls back to its packets' arrival time.

The originals are only read: each track's segments are first joined, as they are (PyAV, no
codec), into a temporary file with the same timestamps, and ffmpeg reads those.

Over the picture go each tile's label (role and name, handed in by the caller: this package
knows ids only) and the wall-clock time in Beijing time (``captions``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import ffmpeg

from . import captions
from .at_rest import encrypt_file, open_plain
from .chain import sm3_file
from .errors import CompositeError
from .session import MANIFEST, read_jsonl

logger = logging.getLogger(__name__)

COMPOSITE = "composite.mp4"
COMPOSITE_INFO = "composite.json"


@dataclass
class TrackPlan:
    track: str
    participant: str
    kind: str
    files: list[Path]
    suffix: str
    offset_s: float  # where the track's first written frame falls, from the session start
    duration_s: float


@dataclass
class CompositePlan:
    directory: Path
    duration_s: float
    video: list[TrackPlan]
    audio: list[TrackPlan]
    slots: list[str]  # participant ids with video, one grid cell each
    started_at: float = 0.0  # the session's start, server clock (epoch seconds)

    def shown(self, participant: str) -> list[tuple[float, float]]:
        """When the participant's video is in its cell (seconds from the start)."""
        return [
            (t.offset_s, t.offset_s + t.duration_s)
            for t in self.video
            if t.participant == participant
        ]


@dataclass(frozen=True)
class Captions:
    """What is drawn over the picture: the font, and each cell's label file by participant."""

    font: captions.Font
    labels: Mapping[str, Path]


def plan(directory: Path) -> CompositePlan:
    """Read a sealed session and decide where every track goes in time and in the grid."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompositeError("the session is not sealed") from exc
    started = float(manifest["started_at"])
    duration = max(0.1, float(manifest["ended_at"]) - started)
    raw: list[tuple[dict[str, Any], list[dict[str, Any]], Path]] = []
    for track in manifest.get("tracks", []):
        track_dir = directory / "tracks" / str(track["track"])
        records, _bad = read_jsonl(track_dir / "manifest.jsonl")
        segments = [r for r in records if r.get("type") == "segment" and not r.get("partial")]
        header = records[0] if records else {}
        if segments and header.get("clock_rate"):
            raw.append((header, segments, track_dir))
    offsets = _clock_offsets(raw)
    video: list[TrackPlan] = []
    audio: list[TrackPlan] = []
    for header, segments, track_dir in raw:
        participant = str(header.get("participant_id"))
        clock = int(header["clock_rate"])
        first = segments[0]
        start = _sender_time(segments, first["first_rtp"], clock)
        if start is None or participant not in offsets:
            start_server = float(first["arrival_first"])
        else:
            start_server = start + offsets[participant]
        last = segments[-1]
        plan_ = TrackPlan(
            track=track_dir.name,
            participant=participant,
            kind=str(header["kind"]),
            files=[track_dir / str(s["file"]) for s in segments],
            suffix=Path(str(first["file"])).suffix,
            offset_s=start_server - started,
            duration_s=(float(last["last_pts_ms"]) - float(first["first_pts_ms"])) / 1000,
        )
        (video if plan_.kind == "video" else audio).append(plan_)
    slots: list[str] = []
    for track in sorted(video, key=lambda t: t.offset_s):
        if track.participant not in slots:
            slots.append(track.participant)
    return CompositePlan(directory, duration, video, audio, slots, started)


def _sender_time(segments: list[dict[str, Any]], rtp: int, clock: int) -> float | None:
    """The publisher's wall-clock time of extended RTP time ``rtp``, from its first report."""
    for segment in segments:
        for wall, report_rtp in segment.get("sender_reports", []):
            return float(wall) + (int(rtp) - int(report_rtp)) / clock
    return None


def _clock_offsets(
    raw: list[tuple[dict[str, Any], list[dict[str, Any]], Path]],
) -> dict[str, float]:
    """Per participant: server clock minus publisher clock (plus the smallest one-way delay)."""
    offsets: dict[str, float] = {}
    for header, segments, _dir in raw:
        participant = str(header.get("participant_id"))
        for segment in segments:
            sent = _sender_time(segments, segment["first_rtp"], int(header["clock_rate"]))
            if sent is None:
                break
            delta = float(segment["arrival_first"]) - sent
            offsets[participant] = min(offsets.get(participant, delta), delta)
    return offsets


def join_segments(files: list[Path], target: Path, data_key: bytes | None = None) -> None:
    """The segments of one track as one file, packets copied with their timestamps (segments
    encrypted at rest are decrypted as they are read)."""
    output = av.open(str(target), "w", format="matroska")
    try:
        stream = None
        for path in files:
            plain = open_plain(path, data_key)
            source = av.open(plain, "r")
            try:
                if not source.streams:
                    continue
                if stream is None:
                    stream = output.add_stream_from_template(source.streams[0], opaque=True)
                last = -1
                for packet in source.demux(source.streams[0]):
                    if packet.dts is None:
                        continue
                    if packet.dts <= last:
                        continue
                    last = packet.dts
                    packet.stream = stream
                    output.mux(packet)
            except av.error.InvalidDataError:
                logger.warning("a segment ends early", extra={"file": path.name})
            finally:
                source.close()
                plain.close()
    finally:
        output.close()


def ffmpeg_command(
    composite: CompositePlan,
    joined: dict[str, Path],
    target: Path,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    overlay: Captions | None = None,
) -> list[str]:
    """The ffmpeg command line that builds the composite (ffmpeg-python compiles it)."""
    duration = f"{composite.duration_s:.3f}"
    video = ffmpeg.input(f"color=c=black:s={width}x{height}:r={fps}:d={duration}", f="lavfi")
    cells = max(1, len(composite.slots))
    columns = math.ceil(math.sqrt(cells))
    rows = math.ceil(cells / columns)
    tile_w, tile_h = (width // columns) // 2 * 2, (height // rows) // 2 * 2
    for track in sorted(composite.video, key=lambda t: t.offset_s):
        slot = composite.slots.index(track.participant)
        x, y = (slot % columns) * tile_w, (slot // columns) * tile_h
        tile = (
            ffmpeg.input(str(joined[track.track]), itsoffset=f"{track.offset_s:.3f}")
            .video.filter("scale", tile_w, tile_h, force_original_aspect_ratio="decrease")
            .filter("pad", tile_w, tile_h, "(ow-iw)/2", "(oh-ih)/2")
        )
        video = ffmpeg.overlay(video, tile, x=x, y=y, eof_action="pass")
    if overlay is not None:
        for slot, participant in enumerate(composite.slots):
            label = overlay.labels.get(participant)
            if label is None:
                continue
            x, y = (slot % columns) * tile_w, (slot // columns) * tile_h
            video = video.filter(
                "drawtext",
                textfile=str(label),
                enable=captions.shown_while(composite.shown(participant)),
                **captions.label_options(overlay.font, x, y, tile_h),
            )
        video = video.filter(
            "drawtext",
            text=captions.time_text(composite.started_at),
            **captions.time_options(overlay.font, width, height),
        )
    sounds = [
        ffmpeg.input(str(joined[t.track]), itsoffset=f"{t.offset_s:.3f}").audio.filter(
            "aresample", **{"async": 1, "first_pts": 0}
        )
        for t in composite.audio
    ]
    if not sounds:
        mixed = ffmpeg.input("anullsrc=r=48000:cl=stereo", f="lavfi").audio
    elif len(sounds) == 1:
        mixed = sounds[0]
    else:
        mixed = ffmpeg.filter(sounds, "amix", inputs=len(sounds), duration="longest", normalize=0)
    mixed = mixed.filter("apad")
    output = ffmpeg.output(
        video,
        mixed,
        str(target),
        t=duration,
        vcodec="libx264",
        preset="veryfast",
        crf=26,
        pix_fmt="yuv420p",
        acodec="aac",
        ar=48000,
        movflags="+faststart",
        f="mp4",
    )
    return list(ffmpeg.compile(output, overwrite_output=True))


async def build(
    directory: Path,
    *,
    fps: int = 30,
    timeout_s: float = 3600.0,
    data_key: bytes | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build ``composite.mp4`` for the sealed session in ``directory``; returns its info.

    ``labels`` (participant id -> what its tile says, e.g. its role and name) are drawn on the
    tiles, and the time in Beijing time over the picture, when a Chinese font is installed
    (``captions``; the info says ``captions: "no_cjk_font"`` when not).

    With the session's ``data_key`` the segments are read decrypted and the composite is stored
    SM4-CTR-encrypted (R36); the plain intermediate files live only in a private (0700)
    scratch directory that is removed afterwards."""
    loop = asyncio.get_running_loop()
    composite = await loop.run_in_executor(None, plan, directory)
    if not composite.video and not composite.audio:  # a text-only visit: its record is the timeline
        info: dict[str, Any] = {
            "file": None,
            "skipped": "no_media",
            "duration_s": composite.duration_s,
        }
        (directory / COMPOSITE_INFO).write_text(json.dumps(info, indent=1, sort_keys=True))
        return info
    scratch = Path(tempfile.mkdtemp(prefix="tc-composite-"))
    try:
        joined: dict[str, Path] = {}
        for track in composite.video + composite.audio:
            target = scratch / f"{track.track}.mkv"
            await loop.run_in_executor(None, join_segments, track.files, target, data_key)
            joined[track.track] = target
        font = await loop.run_in_executor(None, captions.find_cjk_font)
        overlay = None
        if font is not None:
            overlay = Captions(
                font,
                {
                    participant: captions.write_label(scratch, slot, (labels or {})[participant])
                    for slot, participant in enumerate(composite.slots)
                    if (labels or {}).get(participant)
                },
            )
        partial = scratch / COMPOSITE if data_key is not None else directory / f".{COMPOSITE}.part"
        command = ffmpeg_command(composite, joined, partial, fps=fps, overlay=overlay)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _out, err = await asyncio.wait_for(process.communicate(), timeout_s)
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            partial.unlink(missing_ok=True)
            raise
        if process.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = err.decode(errors="replace")[-800:]
            raise CompositeError(f"ffmpeg exited with {process.returncode}: {tail}")
        if data_key is not None:
            sealed = directory / f".{COMPOSITE}.enc"
            sealed.unlink(missing_ok=True)
            await loop.run_in_executor(None, encrypt_file, partial, sealed, data_key)
            partial = sealed
        os.replace(partial, directory / COMPOSITE)
        digest, size = await loop.run_in_executor(None, sm3_file, directory / COMPOSITE)
        info = {
            "file": COMPOSITE,
            "sm3": digest,
            "size": size,
            "duration_s": composite.duration_s,
            "fps": fps,
            "video_tracks": len(composite.video),
            "audio_tracks": len(composite.audio),
            "build_s": round(time.monotonic() - started, 3),
            "captions": (
                "no_cjk_font"
                if overlay is None
                else {"font": overlay.font.file, "labels": len(overlay.labels)}
            ),
            "offsets": {t.track: round(t.offset_s, 4) for t in composite.video + composite.audio},
        }
        (directory / COMPOSITE_INFO).write_text(json.dumps(info, indent=1, sort_keys=True))
        return info
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class CompositeJobs:
    """Builds composites one at a time in the background; owned by the application."""

    def __init__(
        self,
        *,
        fps: int = 30,
        key_of: Callable[[Path], bytes | None] | None = None,
        labels_of: Callable[[Path], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        self._fps = fps
        self._key_of = key_of
        self._labels_of = labels_of
        self._queue: asyncio.Queue[Path] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.built = 0
        self.failed = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def submit(self, directory: Path) -> None:
        self._queue.put_nowait(directory)

    async def _run(self) -> None:
        while True:
            directory = await self._queue.get()
            if (directory / COMPOSITE_INFO).exists():
                continue
            try:
                key = self._key_of(directory) if self._key_of is not None else None
                labels = await self._labels(directory)
                await build(directory, fps=self._fps, data_key=key, labels=labels)
                self.built += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                logger.exception("composite failed", extra={"session": directory.name})

    async def _labels(self, directory: Path) -> Mapping[str, str] | None:
        """The tiles' labels; a composite without names beats none at all."""
        if self._labels_of is None:
            return None
        try:
            return await self._labels_of(directory)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("composite labels failed", extra={"session": directory.name})
            return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
