"""The SFU: Router, Transport, Producer and Consumer on aiortc, forwarding RTP packets.

Forwarding never decodes or re-encodes. This package imports nothing else of ours, and no web,
socket or database library.
"""

from .consumer import Consumer
from .errors import BadSdp, ClosedError, InvalidState, MediaError
from .producer import KEYFRAME_WINDOW_S, Producer
from .router import Router
from .tracking import open_objects
from .transport import PublishResult, Transport
from .worker import MediaWorker

__all__ = [
    "KEYFRAME_WINDOW_S",
    "BadSdp",
    "ClosedError",
    "Consumer",
    "InvalidState",
    "MediaError",
    "MediaWorker",
    "Producer",
    "PublishResult",
    "Router",
    "Transport",
    "open_objects",
]
