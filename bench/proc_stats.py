"""CPU time and resident memory of a process, read from /proc (Linux), all threads included.

``heap_usage`` is read inside a process (the bench server's /memory): glibc's own account of
its heap, to tell live memory from freed memory that malloc keeps (which RSS cannot).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time

_TICKS = os.sysconf("SC_CLK_TCK")


def speed_reference() -> float:
    """Milliseconds this process takes for a fixed pure-Python loop now (the best of three):
    printed beside a bench's figures, since this kind of virtual machine runs at different
    speeds from one hour to the next (1.5-2.5 times apart within a session), so that figures
    of different runs can be set against the machine's speed when each was taken."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS


def rss_mb(pid: int) -> float:
    """Resident set size in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def udp_drops(pid: int) -> int:
    """Datagrams the kernel dropped at the process's UDP sockets (receive buffer full), so far.

    Read from the process's own view of its network namespace; sockets closed since are gone.
    """
    return sum(udp_drops_by_socket(pid).values())


def udp_drops_by_socket(pid: int) -> dict[str, int]:
    """:func:`udp_drops` per open socket (by inode): two readings subtract per socket, so a
    socket closed in between does not take its drops off the difference."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    drops: dict[str, int] = {}
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f)  # the header
            for line in f:
                fields = line.split()
                if fields[9] in inodes:  # inode; the last field is drops
                    drops[fields[9]] = int(fields[-1])
    return drops


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used so far (all cores; not idle/iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    return (sum(fields[:8]) - idle) / _TICKS


def usable_cores() -> tuple[int, int]:
    """(cores of the machine, cores this process may run on)."""
    return os.cpu_count() or 0, len(os.sched_getaffinity(0))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2  # glibc 2.33 and later
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def heap_usage() -> dict[str, float] | None:
    """This process's malloc heap (all arenas), MiB: in use, free but kept, mmapped; or None.

    When RSS grows while ``in_use_mb`` stays flat, the growth is freed memory glibc has not
    given back (fragmentation), not live objects.
    """
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()  # type: ignore[operator]
    mib = 1024 * 1024
    return {
        "in_use_mb": info.uordblks / mib,
        "free_mb": info.fordblks / mib,
        "mmapped_mb": info.hblkhd / mib,
    }
