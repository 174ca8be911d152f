"""Recording of every visit (R22, R23): taps media/ Producers, writes segments and manifests.

* ``recorder``: the recording Consumer, one per Producer (a ``media.graph.Sink``).
* ``assembler`` / ``segments``: packets -> frames -> WebM/Matroska segments + chained manifest.
* ``session``: a room's sessions on disk, timeline, seal, recovery, retention.
* ``verify``: recompute every digest, name what is missing, altered, reordered or extra.
* ``composite``: the lip-synced playback MP4 (ffmpeg), built in the background.

It may import only media/.
"""

from .composite import CompositeJobs
from .recorder import RecordingConsumer, recording_tap
from .service import Recorder
from .session import MIN_RETENTION_DAYS, RecordingStore, SessionRecording
from .verify import verify_room

__all__ = [
    "MIN_RETENTION_DAYS",
    "CompositeJobs",
    "Recorder",
    "RecordingConsumer",
    "RecordingStore",
    "SessionRecording",
    "recording_tap",
    "verify_room",
]
