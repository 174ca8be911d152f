"""socket.io signaling: join, publish, subscribe, trickle ICE, mute, participant list.

Composes media/ (moving media) and consult/ (who may join). Protocol: docs/signaling.md.
"""

from .server import SignalingServer

__all__ = ["SignalingServer"]
