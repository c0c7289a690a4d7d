"""Progress of a long run: done / total, throughput and time left, one line per step.

Both executors report through it, so a nightly over a large archive reads the same locally and
on Ray: ``units 12/480, images 768/30720, 14.2 img/s, ETA 35m`` (the ETA assumes the recent rate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class Progress:
    total_units: int  # 0: the run is not cut into units (the line then counts images only)
    total_images: int
    units: int = 0
    images: int = 0
    start: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def step(self, images: int, units: int = 1) -> str:
        """Record finished work and return the progress line."""
        self.units += units
        self.images += images
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.images / elapsed
        left = max(self.total_images - self.images, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        units = f"units {self.units}/{self.total_units}, " if self.total_units else ""
        return f"{units}images {self.images}/{self.total_images}, {rate:.1f} img/s, ETA {eta}"
