"""The hot-path RTP writer produces packets aiortc (and so any RTP stack) parses back exactly."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.rtp_writer import (
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    URI_TRANSPORT_CC,
    RtpWriter,
    abs_send_time,
    ntp_now,
)

IDS = {URI_MID: 4, URI_ABS_SEND_TIME: 9, URI_AUDIO_LEVEL: 12, URI_TRANSPORT_CC: 3}


def _parser(ids: dict[str, int]) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
        )
    )
    return extensions


@pytest.mark.parametrize("padding", [0, 1, 7])
@pytest.mark.parametrize("level", [None, (True, 33), (False, 127)])
@pytest.mark.parametrize("mid", ["0", "12", None])
@pytest.mark.parametrize("transport_seq", [None, 0, 65535])
def test_written_packets_parse_back(padding, level, mid, transport_seq):
    ntp = ntp_now()
    writer = RtpWriter(ssrc=0xDEADBEEF, payload_type=111, extension_ids=IDS, mid=mid)
    fields = {
        "sequence_number": 65535,
        "timestamp": 0xFFFFFFF0,
        "marker": 1,
        "payload": b"\x90\xe0payload",
        "padding_size": padding,
        "send_time": abs_send_time(ntp),
        "audio_level": level,
        "transport_seq": transport_seq,
    }
    data = writer.write(**fields)
    packet = RtpPacket.parse(data, _parser(IDS))
    assert (packet.version, packet.payload_type, packet.marker) == (2, 111, 1)
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (
        65535,
        0xFFFFFFF0,
        0xDEADBEEF,
    )
    assert packet.payload == b"\x90\xe0payload"
    assert packet.padding_size == padding
    assert packet.extensions.mid == mid
    assert packet.extensions.abs_send_time == (ntp >> 14) & 0xFFFFFF
    assert packet.extensions.audio_level == level
    assert packet.extensions.transport_sequence_number == transport_seq
    # the same packet, the same bytes, whichever was written before (layouts are cached)
    assert writer.write(**fields) == data


def test_no_negotiated_extensions_means_no_extension_block():
    writer = RtpWriter(ssrc=1, payload_type=96, extension_ids={}, mid="0")
    data = writer.write(
        sequence_number=1,
        timestamp=2,
        marker=0,
        payload=b"x",
        padding_size=0,
        send_time=b"\x00\x00\x00",
        audio_level=(False, 10),
    )
    assert len(data) == 13 and data[0] == 0x80
