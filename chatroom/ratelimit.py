"""How fast one connection may send: a token bucket."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows bursts of ``burst`` events, refilled at ``rate`` a second; ``rate`` 0 allows everything."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one; whether there was."""
        if not self.rate:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
