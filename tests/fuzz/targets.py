"""Fuzz targets: each input path of ours, and of the aiortc/aioice code we run, as a function.

The hypothesis tests (tests/fuzz/test_fuzz_*.py) and the corpus replay (test_corpus.py) call the
same targets, so a crash hypothesis found once stays a regression case: its input is kept under
``tests/fuzz/corpus/<target>/<name>.bin``.

A target returns normally for every input, or the input is a crasher. Packet targets run against
a real call (aiortc peers on loopback through a RoomMedia) and enter where the network would:

* ``datagram``: a UDP datagram at a server ICE socket, from a stranger or from the verified peer;
* ``stun``: the same, in the STUN range, optionally signed with the server's real ICE password so
  that it gets past authentication into aioice's check handling;
* ``rtp`` / ``rtcp``: a packet as it comes out of SRTP on the server (what a peer holding the
  SRTP keys, i.e. any participant, can make the server parse), into the guarded DTLS handlers;
  and the same packet parsed, straight into our Producer's and Consumer's handlers.
"""

from __future__ import annotations

import asyncio
import binascii
import hmac
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import RtcpPacket, RtpPacket
from peers import CounterTrack, Subscriber, ToneTrack, client_pc, wait_for

from media import MediaWorker
from media import _aiortc_seam as seam
from media.consumer import Consumer
from media.producer import Producer
from media.room import RoomMedia
from media.transport import Transport
from media.twcc import URI_TRANSPORT_CC, offer_transport_cc, transport_cc_ids

CORPUS = Path(__file__).resolve().parent / "corpus"
STRANGER = ("127.0.0.1", 9)


def corpus(target: str) -> list[Path]:
    """The kept inputs of ``target``: ``*.bin`` (packets), ``*.sdp`` (descriptions)."""
    return sorted(p for p in (CORPUS / target).iterdir() if p.suffix in (".bin", ".sdp"))


def _dtls(transport: Transport) -> Any:
    return transport._pc.getTransceivers()[0].receiver.transport


@dataclass
class Call:
    """One publisher (video + audio) and one subscriber through a RoomMedia, media flowing."""

    worker: MediaWorker
    room: RoomMedia
    publisher_pc: Any
    subscriber: Subscriber

    @property
    def publish(self) -> Transport:
        return self.room._publish["doctor"]

    @property
    def subscribe(self) -> Transport:
        return self.room._subscribe["patient"]

    @property
    def producers(self) -> list[Producer]:
        return self.publish.producers

    @property
    def consumers(self) -> list[Consumer]:
        return self.subscribe.consumers

    def protocol(self, transport: Transport) -> Any:
        """The server socket's (guarded) aioice protocol that carries ``transport``."""
        connection = _dtls(transport).transport._connection
        return connection._nominated[1].protocol

    def peer_addr(self, transport: Transport) -> tuple[str, int]:
        """The ICE-verified remote address of ``transport``."""
        connection = _dtls(transport).transport._connection
        pair = connection._nominated[1]
        return (pair.remote_candidate.host, pair.remote_candidate.port)

    def ice_credentials(self, transport: Transport) -> tuple[str, str]:
        """(USERNAME a connectivity check to the server carries, the server's ICE password)."""
        connection = _dtls(transport).transport._connection
        return (
            f"{connection.local_username}:{connection.remote_username}",
            connection.local_password,
        )

    def alive(self) -> bool:
        return all(_dtls(t).state == "connected" for t in (self.publish, self.subscribe))

    async def assert_flowing(self) -> None:
        """Both DTLS transports up and every Producer still receiving."""
        assert self.alive()
        before = [p.packets_received for p in self.producers]
        await wait_for(
            lambda: all(
                p.packets_received > b for p, b in zip(self.producers, before, strict=True)
            ),
            timeout=5,
            message="media stopped",
        )

    async def close(self) -> None:
        await self.subscriber.close()
        await self.publisher_pc.close()
        await self.room.close()
        await self.worker.close()


async def start_call() -> Call:
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    room = RoomMedia(worker.get_router("fuzz"), lambda *_: None)
    pc = client_pc()
    pc.addTransceiver(CounterTrack(), direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    # both legs negotiate transport-cc, as with a browser: the server then reads the
    # transport-wide sequence number of each datagram and parses transport feedback
    answer = await room.publish("doctor", offer_transport_cc(pc.localDescription.sdp))
    assert transport_cc_ids(answer)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    subscriber = Subscriber(client_pc())
    await room.subscribe("patient")
    offer = await room.create_offer("patient")
    assert offer is not None
    await subscriber.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    ids = transport_cc_ids(offer["sdp"])
    for transceiver in subscriber.pc.getTransceivers():
        if transceiver.mid in ids:
            seam.add_header_extensions(transceiver, {URI_TRANSPORT_CC: ids[transceiver.mid]})
            seam.add_codec_feedback(transceiver, "transport-cc")
    await subscriber.pc.setLocalDescription(await subscriber.pc.createAnswer())
    await room.apply_answer("patient", subscriber.pc.localDescription.sdp)
    call = Call(worker, room, pc, subscriber)
    await wait_for(
        lambda: (
            all(p.packets_received > 10 for p in call.producers)
            and all(c.packets_sent > 10 for c in call.consumers)
        ),
        timeout=15,
        message="the call did not start",
    )
    assert all(c.transport_cc is not None for c in call.consumers)
    return call


def sign_stun(message: bytes, username: str, password: str) -> bytes:
    """``message`` (a STUN header and attributes, however broken) with USERNAME,
    MESSAGE-INTEGRITY and FINGERPRINT appended as an ICE agent holding the password would, so
    that it passes aioice's authentication and reaches its check handling."""
    if len(message) < 20:
        return message
    header, body = message[:20], message[20:]
    body += bytes(-len(body) % 4)
    user = username.encode()
    body += struct.pack("!HH", 0x0006, len(user)) + user + bytes(-len(user) % 4)

    def with_length(extra: int) -> bytes:
        return header[:2] + struct.pack("!H", len(body) + extra) + header[4:]

    integrity = hmac.new(password.encode(), with_length(24) + body, "sha1").digest()
    body += struct.pack("!HH", 0x0008, 20) + integrity
    fingerprint = binascii.crc32(with_length(8) + body) ^ 0x5354554E
    body += struct.pack("!HHI", 0x8028, 4, fingerprint)
    return with_length(0) + body


# --- the targets ----------------------------------------------------------------------------


def datagram(call: Call, transport: Transport, data: bytes, *, from_peer: bool) -> None:
    """A datagram at a server ICE socket; never raises."""
    addr = call.peer_addr(transport) if from_peer else STRANGER
    call.protocol(transport).datagram_received(data, addr)


async def rtp(call: Call, data: bytes) -> None:
    """Decrypted RTP into the publish transport's guarded handler, then into our Producer."""
    dtls = _dtls(call.publish)
    await dtls._handle_rtp_data(data, arrival_time_ms=0)
    try:
        packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
    except (ValueError, struct.error):
        return  # the guard has counted it; aiortc's parser fails on it, not our code
    for producer in call.producers:
        await producer._on_rtp(packet, 0)


async def rtcp(call: Call, data: bytes) -> None:
    """Decrypted RTCP into the subscribe transport's guarded handler, then into our Consumers."""
    await _dtls(call.subscribe)._handle_rtcp_data(data)
    await _dtls(call.publish)._handle_rtcp_data(data)
    try:
        packets = RtcpPacket.parse(data)
    except (ValueError, struct.error):
        return
    for packet in packets:
        for consumer in call.consumers:
            await consumer._on_rtcp(packet)


async def settle() -> None:
    """Let tasks the packets started (resends, keyframe requests) run."""
    await asyncio.sleep(0)
