"""Hypothesis strategies for the wire formats we take from the network.

Each builds something close enough to the real format to get past the first checks, then breaks
lengths, counts and values: random bytes alone rarely reach a parser's second field.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)

# --- datagrams (RFC 7983 first byte) ----------------------------------------------------------

first_bytes = st.one_of(st.integers(0, 3), st.integers(20, 63), st.integers(128, 191), u8)
datagrams = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda b, rest: bytes([b]) + rest, first_bytes, st.binary(max_size=300)),
)

# --- STUN (RFC 8489) --------------------------------------------------------------------------

STUN_ATTRIBUTE_TYPES = [
    0x0001, 0x0003, 0x0006, 0x0008, 0x0009, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015,
    0x0016, 0x0019, 0x0020, 0x0024, 0x0025, 0x8022, 0x8028, 0x8029, 0x802A, 0x802B, 0x802C,
]  # fmt: skip

stun_attribute = st.tuples(
    st.one_of(st.sampled_from(STUN_ATTRIBUTE_TYPES), u16),
    st.one_of(st.binary(max_size=24), st.sampled_from([b"", b"\x00\x01\x00\x09\x7f\x00\x00\x01"])),
)


#: What a connectivity check carries (RFC 8445 7.1.1), some of it of the wrong size.
CHECK_ATTRIBUTES = st.lists(
    st.one_of(
        st.tuples(st.just(0x0024), st.binary(min_size=0, max_size=6)),  # PRIORITY
        st.tuples(st.sampled_from([0x8029, 0x802A]), st.binary(min_size=0, max_size=10)),
        st.tuples(st.just(0x0025), st.binary(max_size=2)),  # USE-CANDIDATE
        stun_attribute,
    ),
    max_size=4,
)


@st.composite
def binding_requests(draw: st.DrawFn) -> bytes:
    """A binding request (header and attributes, unsigned): what the peer's checks look like."""
    body = b""
    for attr_type, value in draw(CHECK_ATTRIBUTES):
        body += struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)
    method = draw(st.sampled_from([0x0001, 0x0001, 0x0001, 0x0003, 0x0002]))
    header = struct.pack("!HHI", method, len(body), 0x2112A442)
    return header + draw(st.binary(min_size=12, max_size=12)) + body


@st.composite
def stun_messages(draw: st.DrawFn) -> bytes:
    message_type = draw(
        st.one_of(st.sampled_from([0x0001, 0x0101, 0x0111, 0x0011, 0x0003, 0x0017]), u16)
    ).__and__(0x3FFF)
    attributes = draw(st.lists(stun_attribute, max_size=6))
    body = b""
    for attr_type, value in attributes:
        pad = bytes(-len(value) % 4) if draw(st.booleans()) else b""
        body += struct.pack("!HH", attr_type, len(value)) + value + pad
    length = len(body) if draw(st.integers(0, 9)) else draw(u16)
    cookie = 0x2112A442 if draw(st.integers(0, 9)) else draw(u32)
    data = struct.pack("!HHI", message_type, length, cookie) + draw(
        st.binary(min_size=12, max_size=12)
    )
    data += body
    if draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


# --- RTP (RFC 3550, 8285) ---------------------------------------------------------------------


@st.composite
def rtp_packets(draw: st.DrawFn, ssrcs: list[int], payload_types: list[int]) -> bytes:
    extension = draw(st.booleans())
    padding = draw(st.integers(0, 4)) == 0
    csrc_count = draw(st.sampled_from([0, 0, 0, 1, 15]))
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrc_count
    marker = 0x80 if draw(st.booleans()) else 0
    payload_type = draw(st.one_of(st.sampled_from(payload_types), st.integers(0, 127)))
    ssrc = draw(st.one_of(st.sampled_from(ssrcs), u32))
    data = bytes([first, marker | payload_type]) + struct.pack("!HII", draw(u16), draw(u32), ssrc)
    data += draw(st.binary(min_size=csrc_count * 4, max_size=csrc_count * 4))
    if extension:
        profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x1001]) | u16)
        elements = b""
        for _ in range(draw(st.integers(0, 4))):
            ext_id = draw(st.sampled_from([1, 2, 3]) | st.integers(0, 15))  # mid, level, abs
            value = draw(st.binary(max_size=18))
            if profile == 0xBEDE:
                claimed = draw(st.one_of(st.just(max(len(value) - 1, 0)), st.integers(0, 15)))
                elements += bytes([(ext_id << 4) | claimed]) + value
            else:
                elements += bytes([ext_id, draw(st.one_of(st.just(len(value)), u8))]) + value
        words = (len(elements) + 3) // 4
        if draw(st.integers(0, 4)) == 0:
            words = draw(u16)
        elements += bytes(-len(elements) % 4)
        data += struct.pack("!HH", profile, words) + elements
    data += draw(st.binary(max_size=40))
    if padding:
        data += bytes([draw(u8)])
    return data


# --- RTCP (RFC 3550, 4585, 5104, REMB) --------------------------------------------------------

RTCP_TYPES = [200, 201, 202, 203, 204, 205, 206, 207]


@st.composite
def rtcp_packet(draw: st.DrawFn, ssrcs: list[int]) -> bytes:
    packet_type = draw(st.one_of(st.sampled_from(RTCP_TYPES), st.integers(192, 223)))
    count = draw(st.integers(0, 31))
    ssrc = lambda: draw(st.one_of(st.sampled_from(ssrcs), u32))  # noqa: E731
    if packet_type in (205, 206):  # RTPFB / PSFB: sender, media source, FCI
        fmt = draw(st.sampled_from([1, 2, 4, 15, count]))
        count = fmt
        body = struct.pack("!II", ssrc(), draw(st.sampled_from([0, *ssrcs]) | u32))
        if packet_type == 206 and fmt == 15:  # REMB
            ssrc_list = [ssrc() for _ in range(draw(st.integers(0, 3)))]
            claimed = draw(st.one_of(st.just(len(ssrc_list)), u8))
            body += b"REMB" + bytes([claimed]) + draw(st.binary(min_size=3, max_size=3))
            body += b"".join(struct.pack("!I", s) for s in ssrc_list)
        elif packet_type == 205 and fmt == 1:  # NACK: (pid, blp) pairs
            body += b"".join(
                struct.pack("!HH", draw(u16), draw(u16)) for _ in range(draw(st.integers(0, 3)))
            )
        else:
            body += draw(st.binary(max_size=24))
        if draw(st.integers(0, 3)) == 0:  # a truncated FCI
            body = body[: draw(st.integers(0, len(body)))]
    elif packet_type in (200, 201):  # SR / RR: sender (info), report blocks
        body = struct.pack("!I", ssrc())
        if packet_type == 200:
            body += draw(st.binary(min_size=20, max_size=20))
        blocks = draw(st.integers(0, 3))
        body += b"".join(
            struct.pack("!I", ssrc()) + draw(st.binary(min_size=20, max_size=20))
            for _ in range(blocks)
        )
        count = blocks if draw(st.integers(0, 3)) else count
    else:
        body = draw(st.binary(max_size=40))
    padded = body + bytes(-len(body) % 4)
    words = len(padded) // 4
    if draw(st.integers(0, 5)) == 0:
        words = draw(u16)
    padding_bit = 0x20 if draw(st.integers(0, 8)) == 0 else 0
    return (
        bytes([0x80 | padding_bit | (count & 0x1F), packet_type])
        + struct.pack("!H", words)
        + padded
    )


def rtcp_compounds(ssrcs: list[int]) -> st.SearchStrategy[bytes]:
    return st.lists(rtcp_packet(ssrcs), min_size=1, max_size=3).map(b"".join)


@st.composite
def transport_feedback(draw: st.DrawFn) -> bytes:
    """An RTCP transport feedback (PT 205 FMT 15) of chunks and deltas, right or broken."""
    count = draw(st.one_of(st.integers(0, 40), u16))
    chunks = b"".join(struct.pack("!H", draw(u16)) for _ in range(draw(st.integers(0, 8))))
    deltas = draw(st.binary(max_size=40))
    body = struct.pack("!IIHHI", draw(u32), draw(u32), draw(u16), count, draw(u32))
    body += chunks + deltas
    padded = body + bytes(-len(body) % 4)
    words = len(padded) // 4
    if draw(st.integers(0, 5)) == 0:
        words = draw(u16)
    padding_bit = 0x20 if draw(st.integers(0, 4)) == 0 else 0
    return bytes([0x80 | padding_bit | 15, 205]) + struct.pack("!H", words) + padded
