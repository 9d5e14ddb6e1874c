"""Discrete-event simulation of a single checkout counter."""

from dataclasses import dataclass, field
from typing import List


@dataclass
class Counter:
    service_time: int
    free_at: int = 0
    waits: List[int] = field(default_factory=list)

    def serve(self, arrival):
        start = max(arrival, self.free_at)
        self.waits.append(start - arrival)
        self.free_at = start + self.service_time


def simulate_checkout(arrivals: list[int], service_time: int) -> dict[str, float]:
    """Serve customers first-come first-served and report waiting times.

    ``arrivals`` are arrival minutes (sorted before use); every customer takes
    ``service_time`` minutes (at least 1).

    >>> simulate_checkout([0, 1, 2, 10], 3)
    {'customers': 4, 'average_wait': 1.5, 'longest_wait': 4, 'closing_time': 13}
    """
    counter = Counter(service_time=max(1, service_time))
    for arrival in sorted(arrivals):
        counter.serve(arrival)
    waits = counter.waits
    return {
        "customers": len(waits),
        "average_wait": round(sum(waits) / len(waits), 2) if waits else 0.0,
        "longest_wait": max(waits, default=0),
        "closing_time": counter.free_at,
    }
