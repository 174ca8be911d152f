# The compiled per-packet core of the send-side estimate: media/_gcc_core.pyx.
from collections.abc import Callable, Sequence

from typing_extensions import Buffer

GROUP_SPAN_US: int
TRENDLINE_WINDOW: int
TRENDLINE_SMOOTHING: float
TRENDLINE_GAIN: float
THRESHOLD_INITIAL_MS: float
THRESHOLD_UP: float
THRESHOLD_DOWN: float
OVERUSE_TIME_MS: float
THROUGHPUT_WINDOW_US: int
STRETCH_WINDOW_US: int
QUEUE_BUCKET_US: int
QUEUE_RECENT_US: int
QUEUE_BASE_US: int
SEND_HISTORY: int
WINDOW_LIMIT: int
OVERUSE: str
NORMAL: str
UNDERUSE: str

def parse_feedback(
    data: Buffer,
) -> tuple[int, int, int, int, int, tuple[int | None, ...]]: ...

class SlidingLine:
    def __init__(self, size: int) -> None: ...
    @property
    def full(self) -> bool: ...
    def add(self, x: float, y: float, default: float = 0.0) -> float: ...
    def slope(self, default: float) -> float: ...

class Trendline:
    threshold: float
    trace: list[tuple[float, float, float]] | None
    @property
    def state(self) -> str: ...
    def update(self, recv_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> str: ...

class EstimatorCore:
    reported_count: int
    lost_count: int
    @property
    def trendline(self) -> Trendline: ...
    @property
    def probe_reports(self) -> list[tuple[int, int, int]]: ...
    probe_sent: Callable[[int, int], int] | None
    sequence: int
    @property
    def state(self) -> str: ...
    def next_sequence(self) -> int: ...
    def sent(self, sequence: int, size: int, now_us: int = -1) -> None: ...
    def feedback(self, data: Buffer) -> int: ...
    def add_results(self, results: Sequence[tuple[int, int | None, int, int]]) -> None: ...
    @property
    def acknowledged_bps(self) -> int | None: ...
    @property
    def arrival_stretch(self) -> float | None: ...
    @property
    def standing_queue_us(self) -> int | None: ...
    @property
    def window_lengths(self) -> tuple[int, int, int]: ...
    @property
    def groups(
        self,
    ) -> tuple[tuple[int, int, int] | None, tuple[int, int] | None]: ...
