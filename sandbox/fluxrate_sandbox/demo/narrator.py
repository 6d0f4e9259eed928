"""Plain terminal narration with timings; colour only on a TTY."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO


class Narrator:
    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream
        self.colour = stream.isatty()
        self.start = time.monotonic()
        self.count = 0

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour else text

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.start:5.1f}s"

    def step(self, title: str) -> None:
        self.count += 1
        stamp = self._paint(f"[{self.elapsed()}]", "2")
        self.stream.write(f"\n{stamp} {self._paint(f'{self.count}. {title}', '1;36')}\n")
        self.stream.flush()

    def detail(self, *lines: str) -> None:
        for line in lines:
            self.stream.write(f"         {line}\n")
        self.stream.flush()

    def ok(self, text: str) -> None:
        self.detail(self._paint("✔ ", "32") + text)

    def warn(self, text: str) -> None:
        self.detail(self._paint("✘ ", "33") + text)

    def block(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            self.detail(self._paint("│ ", "2") + line)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))
        self.detail(self._paint(line, "1"))
        for row in rows:
            self.detail("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
