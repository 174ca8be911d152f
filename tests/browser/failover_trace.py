"""Where a video stall's time goes on a provider cut, from two Chromium pages' statistics.

One cut is followed end to end (issue 16 item 1): the page that sends the video (its camera's
move onto the other connection, its encoder's first frame and first keyframe there, the
keyframe requests it received), the server (its path monitor's switch, from its log), and the
page that receives it (its first video packet after the cut's silence, its first keyframe
decoded, its first frame decoded). Each page samples its own statistics every
:data:`TRACE_EVERY_MS` with the wall clock (``Date.now()``), the clock of the test's cut and of
the server's log, so the events of one cut line up across processes.
"""

from __future__ import annotations

import datetime
import itertools
import re
import statistics
from pathlib import Path
from typing import Any

TRACE_EVERY_MS = 40

#: Starts sampling: [wall s, video frames decoded, audio packets received, own signal level,
#: video packets received, keyframes decoded, PLIs sent, NACKs sent, active lane,
#: per lane (path 0, path 1): [frames encoded, keyframes encoded, PLIs received, FIRs received],
#: video frames received (assembled from their packets, before decoding)].
#: Columns 1 and 2 are the ones the stall measure reads (as SAMPLER_JS's).
TRACE_JS = (
    """
() => {
  clearInterval(window.__inboundTimer);
  window.__inbound = [];
  const tc = window.__tc;
  const sum = (stats, type, kind, key) => {
    let n = 0;
    stats.forEach((s) => { if (s.type === type && s.kind === kind) n += s[key] || 0; });
    return n;
  };
  window.__inboundTimer = setInterval(async () => {
    const at = Date.now() / 1000;
    const sub = await tc.pcs.subscribe.getStats();
    const lanes = [];
    for (const name of ["publish", "standby"]) {
      const pc = tc.pcs[name];
      if (!pc) { lanes.push(null); continue; }
      const out = await pc.getStats();
      lanes.push(["framesEncoded", "keyFramesEncoded", "pliCount", "firCount"].map(
        (key) => sum(out, "outbound-rtp", "video", key)));
    }
    const self = tc.quality.self;
    const lane = tc.lanes();
    window.__inbound.push([
      at,
      sum(sub, "inbound-rtp", "video", "framesDecoded"),
      sum(sub, "inbound-rtp", "audio", "packetsReceived"),
      self && self.level,
      sum(sub, "inbound-rtp", "video", "packetsReceived"),
      sum(sub, "inbound-rtp", "video", "keyFramesDecoded"),
      sum(sub, "inbound-rtp", "video", "pliCount"),
      sum(sub, "inbound-rtp", "video", "nackCount"),
      lane ? lane.active : null,
      lanes,
      sum(sub, "inbound-rtp", "video", "framesReceived"),
    ]);
  }, """
    + str(TRACE_EVERY_MS)
    + """);
  return Date.now() / 1000;
}
"""
)

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def server_switches(log: Path, since: float) -> list[float]:
    """Wall times of the server's path monitor switches ("ICE path switched") after ``since``."""
    times = []
    for line in log.read_text(errors="replace").splitlines():
        if "ICE path switched" not in line:
            continue
        match = _LOG_TIME.match(line)
        if match is None:
            continue
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        at += int(match.group(2)) / 1000
        if at >= since:
            times.append(at)
    return times


def _longest_gap(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(last change before, first change after) the longest time a counter stood still."""
    changes = [points[0][0]] if points else []
    for (_, a), (t, b) in itertools.pairwise(points):
        if b != a:
            changes.append(t)
    if not changes:
        return (0.0, 0.0)
    if points[-1][0] != changes[-1]:
        changes.append(points[-1][0])  # still standing at the end
    return max(itertools.pairwise(changes), key=lambda ab: ab[1] - ab[0], default=(0.0, 0.0))


def _first_rise(points: list[tuple[float, float]], after: float) -> float | None:
    """When the counter first went up after ``after`` (from its value at ``after``)."""
    base = None
    for t, value in points:
        if t <= after or base is None:
            base = value
            continue
        if value > base:
            return t
    return None


def breakdown(
    receiver: list[list[Any]], sender: list[list[Any]], cut_at: float, switches: list[float]
) -> dict[str, float | None]:
    """The video stall of ``receiver``'s page after a cut at ``cut_at`` (wall s), split into
    what ``sender``'s page and the server did meanwhile: ms after the cut of each event (the
    keyframe's: the first after the last move)."""
    frames = [(p[0], p[1]) for p in receiver]
    stall_from, stall_to = _longest_gap(frames)
    packets = [(p[0], p[4]) for p in receiver]
    quiet_from, _quiet_to = _longest_gap([(t, v) for t, v in packets if t >= cut_at - 0.2])
    moved = None
    for before, after in itertools.pairwise(sender):
        if before[8] is not None and after[8] != before[8] and after[0] > cut_at:
            moved = after[0]
            break
    lane = sender[-1][8] if sender else None

    def lane_column(index: int) -> list[tuple[float, float]]:
        return [(p[0], (p[9][lane] or [0, 0, 0, 0])[index]) for p in sender if p[9][lane]]

    def ms(at: float | None) -> float | None:
        return None if at is None else round((at - cut_at) * 1000)

    # the keyframe that ends the stall comes after the last move (the server's switch, the
    # camera's): one made before went the dead way or was not needed
    switched = min(switches) if switches else None
    detected = max([t for t in (moved, switched) if t is not None], default=cut_at)

    return {
        "stall_ms": round((stall_to - stall_from) * 1000),
        "frames_stop": ms(stall_from),
        "server_switch": ms(switched),
        "camera_moved": ms(moved),
        "encoded_on_new": ms(_first_rise(lane_column(0), cut_at)),
        "pli_at_sender": ms(_first_rise(lane_column(2), detected)),
        "keyframe_encoded": ms(_first_rise(lane_column(1), detected)),
        "packets_back": ms(_first_rise(packets, max(quiet_from, cut_at))),
        # the first whole frame after the stall began: what the receiver then waits on is its
        # own decoding, not the network or the server
        "frame_received": ms(_first_rise([(p[0], p[10]) for p in receiver], stall_from)),
        "receiver_pli": ms(_first_rise([(p[0], p[6]) for p in receiver], cut_at)),
        "keyframe_decoded": ms(_first_rise([(p[0], p[5]) for p in receiver], detected)),
        "frames_back": ms(stall_to),
    }


def summarize(rows: list[dict[str, float | None]]) -> dict[str, tuple[int, int, int]]:
    """p50 / max / count of each event over ``rows`` (events that happened)."""
    out = {}
    for key in rows[0] if rows else ():
        values = [v for r in rows if (v := r.get(key)) is not None]
        if values:
            out[key] = (round(statistics.median(values)), round(max(values)), len(values))
    return out
