# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, infer_types=False
"""The per-packet part of the send-side estimate (media/gcc.py), compiled.

Every packet forwarded to a subscriber on transport-cc is reported back in its feedback
(every 50 ms at a few Mbit/s, as Chrome sends it), so this runs once per packet of every
subscriber: parse the feedback, match each report to what was sent, count losses, keep the
acknowledged bytes and the one-way delays over their windows, form packet groups, and fit the
delay trend. In Python that was a fifth of the SFU's CPU (bench/sfu_forwarding.py, issue 10);
libwebrtc does the same in C++. What runs once per feedback or less (the AIMD rate, loss and
probe judgements) stays in media/gcc.py.

Built by ``pip install`` (setup.py, Cython); there is no pure-Python copy of this code.
"""

from libc.stdint cimport int64_t, uint8_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcpy

# --- the constants media/gcc.py documents and imports from here ---------------------------------

#: Packets sent within this span are one group for the delay-based detector.
GROUP_SPAN_US = 5_000
TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_GAIN = 4.0
THRESHOLD_INITIAL_MS = 12.5
THRESHOLD_UP = 0.0087
THRESHOLD_DOWN = 0.039
OVERUSE_TIME_MS = 10.0
#: The throughput the receiver acknowledged: over this much of its arrival time.
THROUGHPUT_WINDOW_US = 500_000
#: The arrival and send spans of what was acknowledged: over this much of its arrival time.
STRETCH_WINDOW_US = 1_000_000
#: The least one-way delay is kept per bucket of arrival time, over the last QUEUE_BASE_US.
QUEUE_BUCKET_US = 250_000
QUEUE_RECENT_US = 500_000
QUEUE_BASE_US = 5_000_000
#: What was sent is kept for matching feedback (several seconds at a few Mbit/s).
SEND_HISTORY = 4096
#: A window keeps at most this many entries, whatever a receiver reports (arrival times that
#: never advance would otherwise keep everything sent).
WINDOW_LIMIT = 1 << 16

OVERUSE, NORMAL, UNDERUSE = "overuse", "normal", "underuse"

cdef enum:
    _HISTORY = 4096  # SEND_HISTORY
    _HISTORY_MASK = 4095
    _RTCP_RTPFB = 205
    _FMT_TRANSPORT_CC = 15
    _DELTA_TICK_US = 250
    _REFERENCE_TICK_US = 64000
    _HEAD_SIZE = 20
    _NORMAL = 0
    _OVERUSE = 1
    _UNDERUSE = 2

cdef int64_t _GROUP_SPAN_US = GROUP_SPAN_US
cdef int64_t _THROUGHPUT_WINDOW_US = THROUGHPUT_WINDOW_US
cdef int64_t _STRETCH_WINDOW_US = STRETCH_WINDOW_US
cdef int64_t _QUEUE_BUCKET_US = QUEUE_BUCKET_US
cdef int64_t _QUEUE_RECENT_US = QUEUE_RECENT_US
cdef int64_t _QUEUE_BASE_US = QUEUE_BASE_US
cdef Py_ssize_t _WINDOW_LIMIT = WINDOW_LIMIT
cdef double _SMOOTHING = TRENDLINE_SMOOTHING
cdef double _GAIN = TRENDLINE_GAIN
cdef double _THRESHOLD_UP = THRESHOLD_UP
cdef double _THRESHOLD_DOWN = THRESHOLD_DOWN
cdef double _OVERUSE_TIME_MS = OVERUSE_TIME_MS
_STATES = (NORMAL, OVERUSE, UNDERUSE)


cdef inline int64_t _monotonic_us() noexcept:
    """time.monotonic_ns() // 1000: the same clock."""
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <int64_t> now.tv_sec * 1_000_000 + now.tv_nsec // 1000


cdef inline int64_t _floor_mod(int64_t a, int64_t b) noexcept:
    cdef int64_t m = a % b
    return m + b if m < 0 else m


# --- a ring of (a, b) pairs, oldest first --------------------------------------------------------

cdef struct Pair:
    int64_t a
    int64_t b

cdef struct Ring:
    Pair *items
    Py_ssize_t capacity  # a power of two
    Py_ssize_t head
    Py_ssize_t count

cdef int _ring_init(Ring *ring) except -1:
    ring.items = <Pair *> malloc(64 * sizeof(Pair))
    if ring.items == NULL:
        raise MemoryError()
    ring.capacity = 64
    ring.head = 0
    ring.count = 0
    return 0

cdef inline Pair *_ring_at(Ring *ring, Py_ssize_t i) noexcept:
    return &ring.items[(ring.head + i) & (ring.capacity - 1)]

cdef inline void _ring_pop(Ring *ring) noexcept:
    ring.head = (ring.head + 1) & (ring.capacity - 1)
    ring.count -= 1

cdef int _ring_push(Ring *ring, int64_t a, int64_t b) except -1:
    cdef Pair *grown
    cdef Py_ssize_t first
    if ring.count == ring.capacity:
        if ring.count >= _WINDOW_LIMIT:
            _ring_pop(ring)
        else:
            grown = <Pair *> malloc(2 * ring.capacity * sizeof(Pair))
            if grown == NULL:
                raise MemoryError()
            first = ring.capacity - ring.head  # the items from head to the end come first
            memcpy(grown, ring.items + ring.head, first * sizeof(Pair))
            memcpy(grown + first, ring.items, ring.head * sizeof(Pair))
            free(ring.items)
            ring.items = grown
            ring.head = 0
            ring.capacity *= 2
    cdef Pair *slot = _ring_at(ring, ring.count)
    slot.a = a
    slot.b = b
    ring.count += 1
    return 0


# --- the feedback packet -------------------------------------------------------------------------

cdef struct Report:
    int64_t arrival  # after the reference time, us; valid when received
    bint received


cdef class _Parsed:
    """One transport feedback, parsed into C arrays (internal)."""
    cdef Report *reports
    cdef Py_ssize_t count
    cdef unsigned int sender, media, base, reference, feedback_count

    def __dealloc__(self):
        free(self.reports)


cdef inline unsigned int _u32(const uint8_t *p) noexcept:
    return (<unsigned int> p[0] << 24) | (<unsigned int> p[1] << 16) | (<unsigned int> p[2] << 8) | p[3]


cdef _Parsed _parse(const uint8_t[:] data):
    """Parse one RTCP transport feedback packet (header included); ValueError if malformed."""
    cdef Py_ssize_t size = data.shape[0]
    if size < _HEAD_SIZE:
        raise ValueError("transport feedback is too short")
    cdef const uint8_t *p = &data[0]
    cdef unsigned int first = p[0]
    if first >> 6 != 2 or p[1] != _RTCP_RTPFB or (first & 0x1F) != _FMT_TRANSPORT_CC:
        raise ValueError("not a transport feedback packet")
    cdef Py_ssize_t end = 4 + ((<Py_ssize_t> p[2] << 8) | p[3]) * 4
    if end > size or end < _HEAD_SIZE:
        raise ValueError("transport feedback length is invalid")
    cdef unsigned int padding
    if first & 0x20:
        padding = p[end - 1]
        if padding == 0 or end - <Py_ssize_t> padding < _HEAD_SIZE:
            raise ValueError("transport feedback padding is invalid")
        end -= padding
    cdef _Parsed parsed = _Parsed.__new__(_Parsed)
    parsed.sender = _u32(p + 4)
    parsed.media = _u32(p + 8)
    parsed.base = (<unsigned int> p[12] << 8) | p[13]
    cdef Py_ssize_t count = (<Py_ssize_t> p[14] << 8) | p[15]
    cdef unsigned int ref = _u32(p + 16)
    parsed.reference = ref >> 8
    parsed.feedback_count = ref & 0xFF
    parsed.count = count
    # the symbols first (at most count), then the deltas they announce
    cdef uint8_t *symbols = <uint8_t *> malloc(count + 1)
    if symbols == NULL:
        raise MemoryError()
    parsed.reports = <Report *> malloc((count + 1) * sizeof(Report))
    if parsed.reports == NULL:
        free(symbols)
        raise MemoryError()
    cdef Py_ssize_t n = 0, pos = _HEAD_SIZE, run, k
    cdef unsigned int chunk, symbol
    cdef int64_t ticks = 0
    cdef int delta
    try:
        while n < count:
            if pos + 2 > end:
                raise ValueError("transport feedback chunks are truncated")
            chunk = (<unsigned int> p[pos] << 8) | p[pos + 1]
            pos += 2
            if not chunk & 0x8000:  # run length: 2-bit symbol, 13-bit run
                symbol = (chunk >> 13) & 0x3
                run = min(<Py_ssize_t> (chunk & 0x1FFF), count - n)
                for k in range(run):
                    symbols[n + k] = symbol
                n += run
            elif chunk & 0x4000:  # a status vector of 7 two-bit symbols
                for k in range(7):
                    if n < count:
                        symbols[n] = (chunk >> (12 - 2 * k)) & 0x3
                    n += 1
            else:  # ... or of 14 one-bit symbols
                for k in range(14):
                    if n < count:
                        symbols[n] = (chunk >> (13 - k)) & 0x1
                    n += 1
        for k in range(count):
            symbol = symbols[k]
            if symbol == 1:
                if pos >= end:
                    raise ValueError("transport feedback deltas are truncated")
                ticks += p[pos]
                pos += 1
                parsed.reports[k].arrival = ticks * _DELTA_TICK_US
                parsed.reports[k].received = True
            elif symbol == 0:
                parsed.reports[k].received = False
            elif symbol == 2:
                if pos + 2 > end:
                    raise ValueError("transport feedback deltas are truncated")
                delta = (<int> p[pos] << 8) | p[pos + 1]
                ticks += delta - 0x10000 if delta & 0x8000 else delta
                pos += 2
                parsed.reports[k].arrival = ticks * _DELTA_TICK_US
                parsed.reports[k].received = True
            else:
                raise ValueError("transport feedback uses the reserved status")
    finally:
        free(symbols)
    return parsed


def parse_feedback(const uint8_t[:] data):
    """(sender ssrc, media ssrc, base sequence, reference time, feedback count, arrivals) of
    one RTCP transport feedback packet: each packet's arrival in us after the reference time x
    64 ms, None for one not received. ValueError if malformed."""
    cdef _Parsed parsed = _parse(data)
    cdef Py_ssize_t k
    arrivals = tuple(
        parsed.reports[k].arrival if parsed.reports[k].received else None
        for k in range(parsed.count)
    )
    return (
        parsed.sender, parsed.media, parsed.base, parsed.reference, parsed.feedback_count,
        arrivals,
    )


# --- the delay trend -----------------------------------------------------------------------------

cdef class SlidingLine:
    """The least-squares line through the last ``size`` points, in O(1) a point. The sums are
    kept relative to an origin moved to the window's first point every ``size`` points, so they
    stay small and a rounding error lives ``size`` points."""

    cdef double *_xs
    cdef double *_ys
    cdef Py_ssize_t _size, _head, _count, _added
    cdef double _origin_x, _origin_y, _sx, _sy, _sxx, _sxy

    def __cinit__(self, Py_ssize_t size):
        if size < 1:
            raise ValueError("a window holds at least one point")
        self._xs = <double *> malloc(size * sizeof(double))
        self._ys = <double *> malloc(size * sizeof(double))
        if self._xs == NULL or self._ys == NULL:
            raise MemoryError()
        self._size = size

    def __dealloc__(self):
        free(self._xs)
        free(self._ys)

    @property
    def full(self):
        return self._count == self._size

    def add(self, double x, double y, double default=0.0):
        """Add the point (x, y); the slope of the window once it is full, else ``default``."""
        return self._add(x, y, default)

    def slope(self, double default):
        return self._slope(default)

    cdef double _add(self, double x, double y, double default) noexcept:
        cdef double ox, oy, nx, ny
        cdef Py_ssize_t slot
        if self._count == self._size:
            ox = self._xs[self._head] - self._origin_x
            oy = self._ys[self._head] - self._origin_y
            self._sx -= ox
            self._sy -= oy
            self._sxx -= ox * ox
            self._sxy -= ox * oy
            self._head = (self._head + 1) % self._size
            self._count -= 1
        elif self._count == 0:
            self._origin_x = x
            self._origin_y = y
        slot = (self._head + self._count) % self._size
        self._xs[slot] = x
        self._ys[slot] = y
        self._count += 1
        self._added += 1
        if self._added >= self._size:
            self._rebase()
        else:
            nx = x - self._origin_x
            ny = y - self._origin_y
            self._sx += nx
            self._sy += ny
            self._sxx += nx * nx
            self._sxy += nx * ny
        return self._slope(default) if self._count == self._size else default

    cdef void _rebase(self) noexcept:
        cdef double sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0, x, y
        cdef Py_ssize_t i, slot
        self._added = 0
        self._origin_x = self._xs[self._head]
        self._origin_y = self._ys[self._head]
        for i in range(self._count):
            slot = (self._head + i) % self._size
            x = self._xs[slot] - self._origin_x
            y = self._ys[slot] - self._origin_y
            sx += x
            sy += y
            sxx += x * x
            sxy += x * y
        self._sx = sx
        self._sy = sy
        self._sxx = sxx
        self._sxy = sxy

    cdef double _slope(self, double default) noexcept:
        cdef double n = self._count
        cdef double denominator = n * self._sxx - self._sx * self._sx
        if denominator:
            return (n * self._sxy - self._sx * self._sy) / denominator
        return default


cdef class Trendline:
    """The delay-gradient detector: overuse when the queueing delay keeps growing."""

    cdef SlidingLine _line
    cdef bint _has_first, _has_threshold_at
    cdef double _first_ms, _accumulated, _smoothed, _trend, _threshold_at, _overuse_ms
    cdef int _deltas, _overuse_count, _state
    cdef public double threshold
    #: None, or a list that gets each update's (recv delta, send delta, arrival) (tests)
    cdef public object trace

    def __cinit__(self):
        self._line = SlidingLine(TRENDLINE_WINDOW)
        self.threshold = THRESHOLD_INITIAL_MS
        self._overuse_ms = -1.0
        self._state = _NORMAL

    @property
    def state(self):
        return _STATES[self._state]

    def update(self, double recv_delta_ms, double send_delta_ms, double arrival_ms):
        """One packet group's delay change against the previous group's; the detector's state
        after it."""
        return _STATES[self._update(recv_delta_ms, send_delta_ms, arrival_ms)]

    cdef int _update(self, double recv_delta_ms, double send_delta_ms, double arrival_ms) except -1:
        # the steps as libwebrtc's TrendlineEstimator orders them: fit, detect, adapt
        if self.trace is not None:
            self.trace.append((recv_delta_ms, send_delta_ms, arrival_ms))
        self._deltas = min(self._deltas + 1, 1000)
        cdef int deltas = self._deltas
        if not self._has_first:
            self._first_ms = arrival_ms
            self._has_first = True
        self._accumulated += recv_delta_ms - send_delta_ms
        self._smoothed = _SMOOTHING * self._smoothed + (1 - _SMOOTHING) * self._accumulated
        cdef double trend = self._line._add(arrival_ms - self._first_ms, self._smoothed, self._trend)
        if deltas < 2:
            self._trend = trend
            return self._state
        # detect: the trend, scaled by the number of deltas, against the threshold
        cdef double threshold = self.threshold
        cdef double modified = min(deltas, 60) * trend * _GAIN
        if modified > threshold:
            if self._overuse_ms == -1:
                self._overuse_ms = send_delta_ms / 2
            else:
                self._overuse_ms += send_delta_ms
            self._overuse_count += 1
            if (
                self._overuse_ms > _OVERUSE_TIME_MS
                and self._overuse_count > 1
                and trend >= self._trend
            ):
                self._overuse_ms = 0.0
                self._overuse_count = 0
                self._state = _OVERUSE
        elif modified < -threshold:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self._state = _UNDERUSE
        else:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self._state = _NORMAL
        self._trend = trend
        # adapt the threshold towards |modified| (slowly up, faster down); a spike (a route
        # change, a stall) does not move it
        if not self._has_threshold_at:
            self._threshold_at = arrival_ms
            self._has_threshold_at = True
        cdef double size = abs(modified)
        if size > threshold + 15:
            self._threshold_at = arrival_ms
            return self._state
        cdef double k = _THRESHOLD_DOWN if size < threshold else _THRESHOLD_UP
        cdef double elapsed = min(arrival_ms - self._threshold_at, 100.0)
        threshold += k * (size - threshold) * elapsed
        self.threshold = min(max(threshold, 6.0), 600.0)
        self._threshold_at = arrival_ms
        return self._state


# --- what was sent, what the feedback says of it -------------------------------------------------

cdef struct Sent:
    int64_t send_us
    int size
    int cluster
    int sequence  # -1: the slot is empty (or reported already)

cdef struct Result:
    int64_t send_us
    int64_t arrival
    int size
    int cluster
    Py_ssize_t order  # its place in the feedback: ties in arrival keep it


cdef int _by_arrival(const void *a, const void *b) noexcept nogil:
    cdef const Result *x = <const Result *> a
    cdef const Result *y = <const Result *> b
    if x.arrival != y.arrival:
        return -1 if x.arrival < y.arrival else 1
    return -1 if x.order < y.order else (1 if x.order > y.order else 0)


cdef class EstimatorCore:
    """One transport's packets, sent and reported: the history that feedback is matched
    against, and what the rate control reads from the reports (losses, acknowledged bytes,
    arrival and send spans, one-way delays, the delay trend's state)."""

    cdef Sent _sent[_HISTORY]
    cdef Ring _acked  # (arrival, size)
    cdef Ring _spans  # (arrival, send time)
    cdef Ring _delays  # (bucket start, least one-way delay in it)
    cdef int64_t _acked_bytes
    cdef bint _has_group, _has_previous
    cdef int64_t _group_first, _group_last, _group_arrival
    cdef int64_t _previous_last, _previous_arrival
    cdef bint _has_reference
    cdef unsigned int _last_reference
    cdef int64_t _reference_base_us
    cdef Result *_received
    cdef Py_ssize_t _received_capacity
    cdef readonly Trendline trendline
    #: packets reported (probes aside) and lost among them since the loss was last judged
    cdef public long long reported_count, lost_count
    #: (cluster, size, arrival) of each reported packet of a probe cluster, for the rate
    #: control to take (media/gcc.py empties it after each feedback)
    cdef readonly list probe_reports
    #: while a probe cluster runs: called with (size, send time) for each packet sent, it
    #: says which cluster the packet belongs to (0: none); None otherwise (the usual case)
    cdef public object probe_sent
    #: the next transport-wide sequence number (16 bits)
    cdef public unsigned int sequence

    def __cinit__(self):
        cdef Py_ssize_t i
        for i in range(_HISTORY):
            self._sent[i].sequence = -1
        _ring_init(&self._acked)
        _ring_init(&self._spans)
        _ring_init(&self._delays)
        self._received_capacity = 256
        self._received = <Result *> malloc(self._received_capacity * sizeof(Result))
        if self._received == NULL:
            raise MemoryError()
        self.trendline = Trendline()
        self.probe_reports = []

    def __dealloc__(self):
        free(self._acked.items)
        free(self._spans.items)
        free(self._delays.items)
        free(self._received)

    @property
    def state(self):
        return _STATES[self.trendline._state]

    def next_sequence(self):
        """The transport-wide sequence number of the next packet sent."""
        cdef unsigned int sequence = self.sequence & 0xFFFF
        self.sequence = (sequence + 1) & 0xFFFF
        return sequence

    def sent(self, unsigned int sequence, int size, int64_t now_us=-1):
        """Note that the packet numbered ``sequence`` (16 bits), ``size`` bytes, went out at
        ``now_us`` (default: now, on time.monotonic's clock, in us)."""
        if now_us < 0:
            now_us = _monotonic_us()
        cdef int cluster = 0
        if self.probe_sent is not None:
            cluster = self.probe_sent(size, now_us)
        cdef Sent *slot = &self._sent[sequence & _HISTORY_MASK]
        slot.sequence = sequence & 0xFFFF
        slot.send_us = now_us
        slot.size = size
        slot.cluster = cluster

    def feedback(self, const uint8_t[:] data):
        """Take one transport feedback packet: its reports matched to what was sent, and
        added. How many matched (0: nothing for the rate control to judge); ValueError, with
        nothing changed, if malformed."""
        cdef _Parsed parsed = _parse(data)
        # the 24-bit reference time wraps (every 12 days): unwrap it against the last one
        cdef int64_t step
        if self._has_reference:
            step = (parsed.reference - self._last_reference) & 0xFFFFFF
            if step >= 0x800000:
                step -= 0x1000000
            self._reference_base_us += step * _REFERENCE_TICK_US
        else:
            self._reference_base_us = 0
            self._has_reference = True
        self._last_reference = parsed.reference
        cdef int64_t origin = self._reference_base_us
        self._reserve(parsed.count)
        cdef Py_ssize_t n = 0, k
        cdef unsigned int sequence = parsed.base
        cdef Sent *slot
        cdef Result *result
        cdef long long counted = 0, lost = 0, matched = 0
        for k in range(parsed.count):
            slot = &self._sent[sequence & _HISTORY_MASK]
            if slot.sequence == <int> sequence:
                matched += 1
                if not slot.cluster:  # a probe overshoots on purpose: its losses say little
                    counted += 1
                    if not parsed.reports[k].received:
                        lost += 1
                if parsed.reports[k].received:
                    slot.sequence = -1  # reported once
                    result = &self._received[n]
                    result.send_us = slot.send_us
                    result.arrival = origin + parsed.reports[k].arrival
                    result.size = slot.size
                    result.cluster = slot.cluster
                    result.order = n
                    n += 1
            sequence = (sequence + 1) & 0xFFFF
        self.reported_count += counted
        self.lost_count += lost
        self._add(n)
        return matched

    def add_results(self, results):
        """Take one feedback's packets as (send us, arrival us or None, size, cluster), in
        sequence order (media.gcc.PacketResult)."""
        results = tuple(results)  # its length holds while it is read (the buffer's size)
        cdef Py_ssize_t n = 0, count = len(results)
        cdef long long counted = 0, lost = 0
        cdef Result *result
        self._reserve(count)
        for send_us, arrival, size, cluster in results:
            if not cluster:
                counted += 1
                if arrival is None:
                    lost += 1
            if arrival is not None:
                result = &self._received[n]
                result.send_us = send_us
                result.arrival = arrival
                result.size = size
                result.cluster = cluster
                result.order = n
                n += 1
        self.reported_count += counted
        self.lost_count += lost
        self._add(n)

    cdef int _reserve(self, Py_ssize_t count) except -1:
        cdef Result *grown
        if count > self._received_capacity:
            grown = <Result *> realloc(self._received, count * sizeof(Result))
            if grown == NULL:
                raise MemoryError()
            self._received = grown
            self._received_capacity = count
        return 0

    cdef int _add(self, Py_ssize_t n) except -1:
        """The received reports in self._received[:n]: in arrival order, into the windows and
        the packet groups (the detector sees one per group)."""
        cdef Py_ssize_t k
        cdef bint ordered = True
        cdef int64_t last_arrival = -1
        for k in range(n):
            if self._received[k].arrival < last_arrival:
                ordered = False
                break
            last_arrival = self._received[k].arrival
        if not ordered:
            qsort(self._received, n, sizeof(Result), _by_arrival)
        cdef Result *r
        cdef int64_t bucket, delay, acked_bytes = 0
        cdef Pair *newest
        for k in range(n):
            r = &self._received[k]
            if self._acked.count >= _WINDOW_LIMIT:
                self._acked_bytes -= _ring_at(&self._acked, 0).b
                _ring_pop(&self._acked)
            _ring_push(&self._acked, r.arrival, r.size)
            acked_bytes += r.size
            _ring_push(&self._spans, r.arrival, r.send_us)
            # the least one-way delay per bucket of arrival time (standing_queue_us)
            bucket = r.arrival - _floor_mod(r.arrival, _QUEUE_BUCKET_US)
            delay = r.arrival - r.send_us
            newest = _ring_at(&self._delays, self._delays.count - 1) if self._delays.count else NULL
            if newest != NULL and newest.a == bucket:
                if delay < newest.b:
                    newest.b = delay
            elif newest == NULL or bucket > newest.a:
                _ring_push(&self._delays, bucket, delay)
            if r.cluster:
                self.probe_reports.append((r.cluster, r.size, r.arrival))
            # packet groups (send times within GROUP_SPAN_US)
            if self._has_group and r.send_us - self._group_first <= _GROUP_SPAN_US:
                if r.send_us > self._group_last:
                    self._group_last = r.send_us
                if r.arrival > self._group_arrival:
                    self._group_arrival = r.arrival
                continue
            if self._has_group and r.send_us < self._group_first:
                continue  # sent before the current group (reordered): no new information
            self._close_group()
            self._has_group = True
            self._group_first = self._group_last = r.send_us
            self._group_arrival = r.arrival
        self._acked_bytes += acked_bytes
        if n:
            last_arrival = self._received[n - 1].arrival
            while self._acked.count and _ring_at(&self._acked, 0).a <= last_arrival - _THROUGHPUT_WINDOW_US:
                self._acked_bytes -= _ring_at(&self._acked, 0).b
                _ring_pop(&self._acked)
            while self._spans.count and _ring_at(&self._spans, 0).a <= last_arrival - _STRETCH_WINDOW_US:
                _ring_pop(&self._spans)
            while self._delays.count and _ring_at(&self._delays, 0).a <= last_arrival - _QUEUE_BASE_US:
                _ring_pop(&self._delays)
        return 0

    cdef int _close_group(self) except -1:
        """The current group is complete: its delay against the previous one goes to the
        detector, and it becomes the previous one."""
        cdef double send_delta, recv_delta
        if not self._has_group:
            return 0
        if self._has_previous:
            send_delta = <double> (self._group_last - self._previous_last) / 1000
            recv_delta = <double> (self._group_arrival - self._previous_arrival) / 1000
            if not (recv_delta < -1000 or send_delta < 0):  # else a clock jump or reordering
                self.trendline._update(recv_delta, send_delta, <double> self._group_arrival / 1000)
        self._previous_last = self._group_last
        self._previous_arrival = self._group_arrival
        self._has_previous = True
        return 0

    @property
    def acknowledged_bps(self):
        """What the receiver got over the last half second of its arrival times."""
        if self._acked.count < 2:
            return None
        cdef Pair *first = _ring_at(&self._acked, 0)
        cdef int64_t span = _ring_at(&self._acked, self._acked.count - 1).a - first.a
        if span < _THROUGHPUT_WINDOW_US // 4:
            return None
        return int(<double> ((self._acked_bytes - first.b) * 8_000_000) / <double> span)

    @property
    def arrival_stretch(self):
        """The span over which the packets acknowledged over the last STRETCH_WINDOW_US
        arrived, over the span they were sent over; None with too little to tell."""
        if self._spans.count < 2:
            return None
        cdef int64_t arrival_span = (
            _ring_at(&self._spans, self._spans.count - 1).a - _ring_at(&self._spans, 0).a
        )
        if arrival_span < _STRETCH_WINDOW_US // 4:
            return None
        cdef int64_t low = _ring_at(&self._spans, 0).b, high = low, send
        cdef Py_ssize_t i
        for i in range(1, self._spans.count):
            send = _ring_at(&self._spans, i).b
            if send < low:
                low = send
            elif send > high:
                high = send
        return arrival_span / <double> max(high - low, 1)

    @property
    def standing_queue_us(self):
        """How much the least one-way delay of the last QUEUE_RECENT_US exceeds the least of
        the last QUEUE_BASE_US; None until a second of history."""
        if self._delays.count < 5:
            return None
        cdef int64_t recent_from = (
            _ring_at(&self._delays, self._delays.count - 1).a - _QUEUE_RECENT_US + _QUEUE_BUCKET_US
        )
        cdef bint has_recent = False
        cdef int64_t recent = 0, base = _ring_at(&self._delays, 0).b
        cdef Pair *item
        cdef Py_ssize_t i
        for i in range(self._delays.count):
            item = _ring_at(&self._delays, i)
            if item.b < base:
                base = item.b
            if item.a >= recent_from and (not has_recent or item.b < recent):
                recent = item.b
                has_recent = True
        return recent - base

    @property
    def window_lengths(self):
        """How many reports the acknowledged-bytes and spans windows hold, and how many
        buckets the delays window does (tests)."""
        return self._acked.count, self._spans.count, self._delays.count

    @property
    def groups(self):
        """(current group: first send, last send, last arrival; previous: last send, last
        arrival), None where there is none yet (tests)."""
        current = (
            (self._group_first, self._group_last, self._group_arrival) if self._has_group else None
        )
        previous = (self._previous_last, self._previous_arrival) if self._has_previous else None
        return current, previous
