"""DatagramGuard: every datagram at a server ICE port is suspect; what is dropped is counted.

Anybody can send a UDP datagram to a port the server announced in its SDP. aioice hands every
datagram that does not parse as STUN, from any address, to aiortc's DTLS receive loop, which
died on an empty one (``data[0]``) and so stopped that direction of the call for good. The seam
(``_aiortc_seam.guard_datagrams``) puts this guard in front of aioice and DTLS:

* demultiplex by first byte (RFC 7983): STUN 0-3, DTLS 20-63, RTP/RTCP 128-191; anything else,
  and anything shorter than the smallest header of its kind, is dropped;
* STUN goes to aioice only once it parses; an error aioice raises on it is caught;
* DTLS and media are taken only from a remote address that ICE verified (a pair whose check
  succeeded, or that the peer nominated), so a stranger cannot even reach the DTLS parser;
* after SRTP is undone, an RTP or RTCP packet that our parsers or handlers fail on is dropped
  and counted instead of ending the receive loop.

Drops are counted by reason and logged as at most one warning per transport a minute.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

STUN: Final = "stun"
DTLS: Final = "dtls"
SRTP: Final = "srtp"  # RTP and RTCP, SRTP-protected

#: Why a datagram (or, after SRTP, a packet) was dropped.
REASONS: Final = (
    "empty",  # zero bytes
    "truncated",  # shorter than the smallest header of its kind
    "unclassifiable",  # the first byte is none of STUN, DTLS, RTP/RTCP
    "stun_malformed",  # in the STUN range but does not parse
    "stun_error",  # parsed, but aioice raised handling it
    "unverified_source",  # DTLS or media from an address ICE did not verify
    "rtp_error",  # decrypted RTP that failed to parse or to be handled
    "rtcp_error",  # decrypted RTCP that failed to parse or to be handled
    "sctp_error",  # decrypted SCTP (data channels) that failed to be handled
)

#: The smallest datagram of each kind: the STUN header (RFC 8489), the DTLS record header
#: (RFC 6347), the RTP fixed header (RFC 3550; an SRTCP packet is longer still: header and index).
MIN_LENGTH: Final = {STUN: 20, DTLS: 13, SRTP: 12}

#: At most one warning per transport in this many seconds; the counts say the rest.
WARNING_INTERVAL_S = 60.0


def classify(data: bytes) -> str:
    """``STUN``, ``DTLS`` or ``SRTP`` by the first byte (RFC 7983), else the reason to drop."""
    if not data:
        return "empty"
    first = data[0]
    if first < 4:
        kind = STUN
    elif 20 <= first < 64:
        kind = DTLS
    elif 128 <= first < 192:
        kind = SRTP
    else:
        return "unclassifiable"
    if len(data) < MIN_LENGTH[kind]:
        return "truncated"
    return kind


class DatagramGuard:
    """Counts what one Transport dropped, by reason; rate-limits the warning about it."""

    def __init__(self, transport_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.transport_id = transport_id
        self._clock = clock
        self._counts = dict.fromkeys(REASONS, 0)
        self._since_warning = 0
        self._last_warning = -math.inf

    def drop(self, reason: str, detail: str = "") -> None:
        """Count one dropped datagram; warn if this transport has not warned for a while."""
        self._counts[reason] += 1
        self._since_warning += 1
        now = self._clock()
        if now - self._last_warning < WARNING_INTERVAL_S:
            return
        logger.warning(
            "dropped %d hostile or broken datagram(s) (latest: %s%s); totals: %s",
            self._since_warning,
            reason,
            f", {detail}" if detail else "",
            {k: v for k, v in self._counts.items() if v},
            extra={"transport_id": self.transport_id},
        )
        self._last_warning = now
        self._since_warning = 0

    def stats(self) -> dict[str, int]:
        """Dropped datagrams so far, by reason (every reason present, zero included)."""
        return dict(self._counts)
