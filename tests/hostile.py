"""Hostile datagrams: what anybody on the network can send to a server ICE port.

Each generator takes a ``random.Random`` so that a run can be replayed from its seed. The kinds
follow RFC 7983's demultiplexing by first byte (STUN 0-3, DTLS 20-63, RTP/RTCP 128-191) and then
break what comes after it.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

COOKIE = 0x2112A442


def stun_message(
    attributes: list[tuple[int, bytes]],
    *,
    message_type: int = 0x0001,
    length: int | None = None,
    transaction_id: bytes | None = None,
) -> bytes:
    """A STUN message from raw attributes (type, value), padded; ``length`` may lie."""
    body = b""
    for attr_type, value in attributes:
        body += struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)
    tid = transaction_id if transaction_id is not None else bytes(12)
    claimed = len(body) if length is None else length
    return struct.pack("!HHI", message_type, claimed, COOKIE) + tid + body


def _tid(rng: random.Random) -> bytes:
    return rng.randbytes(12)


def empty(rng: random.Random) -> bytes:
    return b""


def random_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 1400))


def one_byte(rng: random.Random) -> bytes:
    return bytes([rng.choice([0, 1, 3, 20, 22, 63, 128, 191, rng.randint(0, 255)])])


def stun_truncated(rng: random.Random) -> bytes:
    whole = stun_message(
        [(0x0006, b"abcd:efgh"), (0x0024, rng.randbytes(4)), (0x8028, rng.randbytes(4))],
        transaction_id=_tid(rng),
    )
    if rng.random() < 0.5:
        return whole[: rng.randint(1, len(whole) - 1)]
    # a header that claims more (or less) than follows
    return stun_message([(0x0006, b"abcd")], length=rng.randint(0, 400), transaction_id=_tid(rng))


def stun_bad_attribute(rng: random.Random) -> bytes:
    """Attributes of a wrong size or encoding, each of which some STUN parser chokes on."""
    bad = rng.choice(
        [
            (0x0024, rng.randbytes(rng.choice([0, 1, 3, 5]))),  # PRIORITY, 4 bytes expected
            (0x802A, rng.randbytes(rng.choice([0, 4, 7, 9]))),  # ICE-CONTROLLING, 8 expected
            (0x8029, rng.randbytes(3)),  # ICE-CONTROLLED
            (0x8028, rng.randbytes(2)),  # FINGERPRINT
            (0x000C, rng.randbytes(1)),  # CHANNEL-NUMBER
            (0x0020, rng.randbytes(rng.choice([0, 2, 5, 9]))),  # XOR-MAPPED-ADDRESS
            (0x0001, b"\x00\x07" + rng.randbytes(6)),  # MAPPED-ADDRESS of family 7
            (0x0006, b"\xff\xfe\xfd"),  # USERNAME that is not UTF-8
            (0x0009, rng.randbytes(2)),  # ERROR-CODE
        ]
    )
    message_type = rng.choice([0x0001, 0x0101, 0x0111, 0x0011])  # request, response, error, ind.
    return stun_message([bad], message_type=message_type, transaction_id=_tid(rng))


def stun_bad_integrity(rng: random.Random) -> bytes:
    """A binding request that looks like a connectivity check but is signed with a wrong key."""
    return stun_message(
        [
            (0x0006, b"ab12:cd34"),
            (0x0024, struct.pack("!I", rng.getrandbits(32))),
            (0x802A, rng.randbytes(8)),
            (0x0025, b""),
            (0x0008, rng.randbytes(20)),
        ],
        transaction_id=_tid(rng),
    )


def stun_unknown(rng: random.Random) -> bytes:
    """An unknown method or a response to a transaction nobody started."""
    return stun_message(
        [(0x0020, b"\x00\x01" + rng.randbytes(6))],
        message_type=rng.choice([0x0101, 0x003F, 0x0115, 0x0000]),
        transaction_id=_tid(rng),
    )


def fake_dtls(rng: random.Random) -> bytes:
    content_type = rng.choice([20, 21, 22, 23, rng.randint(20, 63)])
    header = bytes([content_type, 0xFE, rng.choice([0xFD, 0xFF])]) + rng.randbytes(8)
    length = rng.randint(0, 300)
    truncated = rng.random() < 0.3
    return header + struct.pack("!H", length) + rng.randbytes(length // 2 if truncated else length)


def fake_rtp(rng: random.Random) -> bytes:
    first = 0x80 | rng.choice([0, 0x10, 0x20, 0x0F])  # version 2, maybe extension/padding/CSRC
    return bytes([first, rng.choice([96, 97, 111, 0x80 | 96, rng.randint(0, 127)])]) + (
        rng.randbytes(rng.choice([0, 4, 10, 40, 1000]))
    )


def fake_rtcp(rng: random.Random) -> bytes:
    first = 0x80 | rng.randint(0, 31)
    packet_type = rng.randint(192, 223)  # covers SR, RR, SDES, BYE, APP, RTPFB, PSFB
    return bytes([first, packet_type]) + rng.randbytes(rng.choice([0, 2, 6, 20, 60, 300]))


KINDS: list[Callable[[random.Random], bytes]] = [
    empty,
    random_bytes,
    one_byte,
    stun_truncated,
    stun_bad_attribute,
    stun_bad_integrity,
    stun_unknown,
    fake_dtls,
    fake_rtp,
    fake_rtcp,
]


def garbage(rng: random.Random) -> bytes:
    """One datagram of a kind picked at random."""
    return rng.choice(KINDS)(rng)
