"""Memory of a process, read from /proc (Linux): current and peak resident set size."""

from __future__ import annotations

import os
from pathlib import Path


def _status_kib(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def rss_mib(pid: int | None = None) -> float | None:
    """Current resident set size (VmRSS) in MiB."""
    kib = _status_kib(pid or os.getpid(), "VmRSS")
    return round(kib / 1024, 1) if kib is not None else None


def peak_rss_mib(pid: int | None = None) -> float | None:
    """Peak resident set size (VmHWM) in MiB."""
    kib = _status_kib(pid or os.getpid(), "VmHWM")
    return round(kib / 1024, 1) if kib is not None else None


def cpu_seconds(pid: int | None = None) -> float | None:
    """User plus system CPU time the process has used so far (from /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0], utime [11], stime [12]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
