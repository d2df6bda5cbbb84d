"""How fast something may happen: a token bucket, and one bucket per key (an address, a user)."""

from __future__ import annotations

import time
from collections.abc import Hashable


class TokenBucket:
    """Allows bursts of ``burst`` events, refilled at ``rate`` a second; ``rate`` 0 allows everything."""

    __slots__ = ("rate", "burst", "tokens", "updated")

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

    def full_at(self, now: float) -> bool:
        """Whether the bucket has refilled by ``now`` (forgetting it then changes nothing)."""
        return self.tokens + (now - self.updated) * self.rate >= self.burst


class KeyedBuckets:
    """One :class:`TokenBucket` per key, made on first use.

    Memory stays bounded by the keys seen lately: once more than
    ``prune_above`` are kept, the buckets that have refilled are forgotten
    (a new one would start full too), at most once per that many new keys.
    """

    def __init__(self, rate: float, burst: int, prune_above: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.prune_above = prune_above
        self._buckets: dict[Hashable, TokenBucket] = {}
        self._next_prune = prune_above

    def take(self, key: Hashable) -> bool:
        """Spend one of ``key``'s tokens if it has one; whether it had."""
        if not self.rate:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._next_prune:
                self._prune()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self) -> None:
        now = time.monotonic()
        self._buckets = {key: bucket for key, bucket in self._buckets.items() if not bucket.full_at(now)}
        # Every bucket still spending (an attack from many addresses): prune again only after as many new keys.
        self._next_prune = len(self._buckets) + self.prune_above
