"""Packets to frames: order restored, holes waited for then counted, nothing doubled."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from recording.assembler import Frame, FrameAssembler, unwrap


def _packet(seq: int, ts: int, marker: bool = False, payload: bytes = b"x") -> RtpPacket:
    return RtpPacket(
        payload_type=96,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        marker=int(marker),
        payload=payload,
    )


def _assembler(frames: list[Frame], *, audio: bool = False, hold: float = 0.5) -> FrameAssembler:
    return FrameAssembler(
        frames.append,
        depayload=lambda p: p,
        starts_keyframe=lambda p: p.startswith(b"K"),
        per_packet_frames=audio,
        hold_s=hold,
    )


def test_unwrap_follows_wraparound_both_ways() -> None:
    assert unwrap(2, 65534, 16) == 65538
    assert unwrap(65534, 65538, 16) == 65534
    assert unwrap(5, 2**32 - 10, 32) == 2**32 + 5


def test_reordered_packets_make_whole_frames_in_order() -> None:
    frames: list[Frame] = []
    a = _assembler(frames)
    # frame 1 = seq 10, 11 (marker); frame 2 = seq 12, 13 (marker); 11 and 12 swapped
    for seq, ts, marker, t in (
        (10, 0, False, 0.0),
        (12, 3000, False, 0.01),
        (11, 0, True, 0.02),
        (13, 3000, True, 0.03),
    ):
        a.add(_packet(seq, ts, marker, b"K" if seq == 10 else b"d"), t, t)
    assert [(f.timestamp, f.first_seq, f.last_seq, f.complete) for f in frames] == [
        (0, 10, 11, True),
        (3000, 12, 13, True),
    ]
    assert frames[0].starts_keyframe and not frames[1].starts_keyframe
    assert a.packets == 4 and a.lost == 0


def test_a_hole_is_waited_for_then_counted_lost_and_named() -> None:
    frames: list[Frame] = []
    a = _assembler(frames, hold=0.5)
    a.add(_packet(100, 0, True), 0.0, 0.0)
    a.add(_packet(102, 3000, True), 0.1, 0.1)  # 101 missing
    assert len(frames) == 1  # waiting: a retransmission may come
    a.release(0.3)
    assert len(frames) == 1
    a.release(0.7)  # 102 has waited longer than the hold
    assert a.lost == 1 and a.gaps == [(101, 101)]
    assert [f.first_seq for f in frames] == [100, 102]
    assert frames[1].complete is False  # its first packets may be the lost ones


def test_a_packet_lost_inside_a_frame_is_counted_once_as_lost() -> None:
    frames: list[Frame] = []
    a = _assembler(frames)
    a.add(_packet(10, 0, False, b"K"), 0.0, 0.0)
    a.add(_packet(12, 0, True), 0.0, 0.0)  # 11, the middle of the frame, never comes
    a.release(1.0)
    a.add(_packet(13, 3000, True), 1.0, 1.0)
    assert [(f.first_seq, f.last_seq, f.packets, f.complete) for f in frames] == [
        (10, 12, 2, False),
        (13, 13, 1, True),
    ]
    assert a.lost == 1 and a.packets == 3  # received = written + lost, nothing twice


def test_a_late_retransmission_within_the_hold_fills_the_hole() -> None:
    frames: list[Frame] = []
    a = _assembler(frames)
    a.add(_packet(1, 0, True), 0.0, 0.0)
    a.add(_packet(3, 6000, True), 0.05, 0.05)
    a.add(_packet(2, 3000, True), 0.2, 0.2)  # the NACKed packet, resent
    assert [f.first_seq for f in frames] == [1, 2, 3] and a.lost == 0


def test_duplicates_and_too_late_packets_are_counted_not_written() -> None:
    frames: list[Frame] = []
    a = _assembler(frames, audio=True)
    for seq in (1, 2, 2, 3, 1):  # 2 twice, 1 again after it was written
        a.add(_packet(seq, seq * 960), 0.0, 0.0)
    a.add(_packet(5, 5 * 960), 0.0, 0.0)
    a.release(1.0)  # 4 is given up on
    a.add(_packet(4, 4 * 960), 1.1, 1.1)  # ... and comes after all
    assert [f.first_seq for f in frames] == [1, 2, 3, 5]
    assert a.duplicates == 2 and a.late == 1 and a.lost == 1 and a.packets == 4


def test_sequence_wraparound_keeps_frames_in_order() -> None:
    frames: list[Frame] = []
    a = _assembler(frames, audio=True)
    for seq in (65534, 65535, 0, 1):
        a.add(_packet(seq, seq * 960), 0.0, 0.0)
    assert [f.first_seq for f in frames] == [65534, 65535, 65536, 65537]


def test_restart_after_a_pause_is_not_a_loss() -> None:
    frames: list[Frame] = []
    a = _assembler(frames, audio=True)
    a.add(_packet(10, 0), 0.0, 0.0)
    a.restart(1.0)  # the Producer paused (mute) and resumed; 11..499 never reached the tap
    a.add(_packet(500, 48000 * 5), 5.0, 5.0)
    a.release(6.0)
    assert a.lost == 0 and len(frames) == 2
    assert frames[1].timestamp == 48000 * 5  # time keeps running across the pause


def test_flush_writes_what_is_held_and_counts_the_holes() -> None:
    frames: list[Frame] = []
    a = _assembler(frames)
    a.add(_packet(1, 0, True), 0.0, 0.0)
    a.add(_packet(3, 3000, False), 0.0, 0.0)
    a.release(0.0, flush=True)
    assert a.lost == 1 and [f.first_seq for f in frames] == [1, 3]


def test_vp8_depayload_matches_aiortc_on_every_descriptor_form() -> None:
    import fractions

    import av
    import pytest
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.codecs.vpx import vp8_depayload as aiortc_vp8_depayload

    from recording.depacketize import depayloader

    ours = depayloader("vp8")
    encoder = Vp8Encoder()
    frame = av.VideoFrame(width=320, height=240, format="yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ts = encoder.encode(frame)
    assert payloads
    # descriptors: none of X; X with 7- and 15-bit picture ids, TL0PICIDX, TID
    variants = [
        b"\x10" + b"body",
        b"\x90\x80\x05" + b"body",
        b"\x90\x80\x85\x01" + b"body",
        b"\x90\xe0\x85\x01\x07\x40" + b"body",
    ]
    for payload in [*payloads, *variants]:
        assert ours(payload) == aiortc_vp8_depayload(payload)
    for bad in (b"", b"\x90", b"\x90\x80"):
        with pytest.raises(ValueError):
            ours(bad)


def test_a_malformed_payload_is_counted_and_recording_goes_on() -> None:
    from recording.depacketize import depayloader

    frames: list[Frame] = []
    a = FrameAssembler(
        frames.append,
        depayload=depayloader("vp8"),
        starts_keyframe=lambda p: False,
        per_packet_frames=False,
        hold_s=0.5,
    )
    a.add(_packet(1, 0, True, b"\x10ok"), 0.0, 0.0)
    a.add(_packet(2, 3000, True, b""), 0.0, 0.0)  # an attacker's empty payload
    a.add(_packet(3, 6000, True, b"\x10ok"), 0.0, 0.0)
    assert a.malformed == 1 and [f.complete for f in frames] == [True, False, True]
    assert frames[2].payloads == [b"ok"]
