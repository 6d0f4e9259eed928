"""What a scenario reports: its figures (counts) and its expectations (held or not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Figure = int | float | str


@dataclass(frozen=True)
class Size:
    """Full size divides by 1; the CI-sized run divides the counts by ``divisor``."""

    name: str
    divisor: int

    def n(self, full: int, minimum: int = 1) -> int:
        return max(minimum, full // self.divisor)


FULL = Size("full", 1)
CI = Size("ci", 5)
SIZES = {"full": FULL, "ci": CI}


@dataclass
class Outcome:
    scenario: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def check(self, expectation: str, held: bool) -> bool:
        self.checks[expectation] = bool(held)
        return bool(held)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(self.checks.values())

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "title": self.title, "passed": self.passed,
                "seconds": round(self.seconds, 1), "figures": self.figures, "checks": self.checks, "error": self.error}
