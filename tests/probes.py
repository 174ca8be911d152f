"""Probes that watch aiortc from the outside: which objects created a decoder or an encoder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiortc.rtcrtpreceiver as receiver_module
import aiortc.rtcrtpsender as sender_module


@dataclass
class CodecProbe:
    """Records the owner of every decoder and encoder aiortc creates while active.

    A decoder is created in the receiver's decoder thread from the receiver's input queue; an
    encoder by the sender itself. We record those owners (queue, sender) by identity.
    """

    decoder_queues: list[Any] = field(default_factory=list)
    encoder_senders: list[Any] = field(default_factory=list)

    def decoders_of(self, receivers: list[Any]) -> int:
        queues = {id(r._RTCRtpReceiver__decoder_queue) for r in receivers}
        return sum(1 for q in self.decoder_queues if id(q) in queues)

    def encoders_of(self, senders: list[Any]) -> int:
        ids = {id(s) for s in senders}
        return sum(1 for s in self.encoder_senders if id(s) in ids)


@contextmanager
def codec_probe() -> Iterator[CodecProbe]:
    probe = CodecProbe()
    real_decoder = receiver_module.get_decoder
    real_encoder = sender_module.get_encoder

    def get_decoder(codec: Any) -> Any:
        caller = sys._getframe(1).f_locals
        probe.decoder_queues.append(caller.get("input_q"))
        return real_decoder(codec)

    def get_encoder(codec: Any) -> Any:
        caller = sys._getframe(1).f_locals
        probe.encoder_senders.append(caller.get("self"))
        return real_encoder(codec)

    receiver_module.get_decoder = get_decoder
    sender_module.get_encoder = get_encoder
    try:
        yield probe
    finally:
        receiver_module.get_decoder = real_decoder
        sender_module.get_encoder = real_encoder


def server_endpoints(pool: Any) -> tuple[list[Any], list[Any]]:
    """All receivers and senders of the server's peer connections (in-process pool), right now."""
    receivers, senders = [], []
    for router in pool.worker.routers:
        for transport in router._transports.values():
            for transceiver in transport._pc.getTransceivers():
                receivers.append(transceiver.receiver)
                senders.append(transceiver.sender)
    return receivers, senders
