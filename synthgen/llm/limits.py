"""Client-side rate limits, keyed by (base URL, model, key env) because providers limit per
account and model, not per recipe role.

Each key gets a concurrency semaphore and two pacers (requests and tokens). A pacer is a GCRA
("virtual scheduling"): every caller reserves its own send time at once and sleeps until it, so
there is no polling, no thundering herd and no thread. Requests are paced at just under the limit
with a burst of one, so any 60 s window holds at most the limit. Limits not configured are learned
from ``x-ratelimit-*`` headers, and a 429 pauses the whole key for its ``retry-after`` (with jitter)
and, when no limit is known, lowers the pace to what the server accepted.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["KeyLimiter", "Limits", "parse_reset"]

_HEADROOM = 0.98  # pace at 98% of a limit: clock skew and jitter never tip a window over it
_CAP_WINDOW = 1.02  # seconds: the per-second cap's window, 2% long for the same reason
_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """OpenAI's ``x-ratelimit-reset-*`` durations: "20ms", "1s", "6m0s", "1h2m3.5s"."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    return sum(float(v) * _UNIT[u] for v, u in parts) if parts else None


class Pacer:
    """GCRA pacing at ``rate`` units per second with a burst of ``burst`` units."""

    def __init__(self, rate: float | None, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = burst
        self._tat = 0.0  # theoretical arrival time of the next unit

    def reserve(self, cost: float = 1.0) -> float:
        """Reserve ``cost`` units; return the delay before the caller may send."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        tat = max(self._tat, now)
        interval = cost / self.rate
        allowed_at = tat + interval - max(self.burst, cost) / self.rate
        self._tat = tat + interval
        return max(0.0, allowed_at - now)

    def hold_until(self, when: float) -> None:
        self._tat = max(self._tat, when)


@dataclass
class KeyLimiter:
    """Limits for one (base URL, model, key env)."""

    max_concurrency: int
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    requests: Pacer = field(init=False)
    tokens: Pacer = field(init=False)
    learned_rpm: int | None = None
    rate_limited: int = 0
    _semaphore: asyncio.Semaphore = field(init=False)
    _paused_until: float = 0.0
    _starts: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    _probe: asyncio.Event | None = None
    _adaptive: bool = False

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_concurrency)
        self.requests = Pacer(None)
        self.tokens = Pacer(None)
        self._apply()

    def _apply(self, force: bool = False) -> None:
        rpm = self.known_rpm
        if rpm:
            first = self.requests.rate is None and not force
            self.requests.rate = min(rpm * _HEADROOM, max(rpm - 1, 0.5)) / 60.0
            if first and self._starts:  # requests sent before the limit was known count against it
                self.requests.hold_until(self._starts[-1] + 1.0 / self.requests.rate)
        if self.tokens_per_minute:
            self.tokens.rate = self.tokens_per_minute * _HEADROOM / 60.0
            self.tokens.burst = self.tokens_per_minute * (1 - _HEADROOM)

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        """Hold one concurrency slot, paced by requests and tokens per minute.

        With no request limit configured or learned yet, the first request of a key goes alone:
        its response headers usually announce the limits, so a cold start cannot burst past them.
        """
        async with self._semaphore:
            prober = False
            if self._probe is None and not self.known_rpm:
                self._probe, prober = asyncio.Event(), True
            elif self._probe is not None and not self._probe.is_set():
                await self._probe.wait()
            delay = max(self.requests.reserve(1.0), self.tokens.reserve(float(tokens)) if tokens else 0.0)
            pause = self._paused_until - time.monotonic()
            delay = max(delay, pause)
            if delay > 0:
                await asyncio.sleep(delay)
            # Pacing reserves slots ahead; a slot served late (a busy loop) would bunch with the next
            # one. Providers enforce sub-minute windows too, so cap actual sends per second, over a
            # window 2% longer than a second: network jitter up to 20 ms cannot tip the server's over.
            while (wait := self._cap_wait()) > 0:  # noqa: ASYNC110 - a clock, not an event, ends the wait
                await asyncio.sleep(wait)
            self._starts.append(time.monotonic())
            try:
                yield
            finally:
                if prober and self._probe is not None:
                    self._probe.set()

    def _cap_wait(self) -> float:
        """Seconds until one more send keeps the per-second cap (0: send now)."""
        cap = self._per_second_cap()
        if not cap or len(self._starts) < cap:
            return 0.0
        return self._starts[-cap] + _CAP_WINDOW - time.monotonic()

    def _per_second_cap(self) -> int | None:
        rpm = self.known_rpm
        if rpm is None or rpm // 60 >= (self._starts.maxlen or 0):
            return None
        return max(1, rpm // 60)

    @property
    def known_rpm(self) -> int | None:
        return min(filter(None, (self.requests_per_minute, self.learned_rpm)), default=None)

    def pause(self, seconds: float) -> float:
        """A 429 pauses every request of this key; returns the jittered pause applied."""
        self.rate_limited += 1
        seconds = max(seconds, 0.01) * (1.0 + random.random() * 0.25)
        until = time.monotonic() + seconds
        self._paused_until = max(self._paused_until, until)
        if self.requests_per_minute is None and (self.learned_rpm is None or self._adaptive):
            # no limit announced: multiplicative decrease to 90% of the rate just refused; successes
            # raise it again (see learn), so one spurious 429 does not cap a run for good
            observed = self._observed_rpm()
            if observed is not None:
                self._adaptive = True
                self.learned_rpm = max(1, int(min(observed, self.learned_rpm or observed) * 0.9))
                self._apply(force=True)
        self.requests.hold_until(until)
        return seconds

    def _observed_rpm(self, window: float = 10.0) -> float | None:
        """Requests per minute sent over the last ``window`` s; None on too small a sample."""
        now = time.monotonic()
        recent = [t for t in self._starts if now - t <= window]
        if len(recent) < 20:
            return None
        return len(recent) * 60.0 / max(1.0, now - recent[0])

    def learn(self, headers: Mapping[str, str]) -> None:
        """Adopt limits a server announces (``x-ratelimit-limit-requests``/``-tokens``)."""
        limit = headers.get("x-ratelimit-limit-requests")
        if limit and limit.isdigit() and self.requests_per_minute is None and int(limit) != self.learned_rpm:
            self.learned_rpm, self._adaptive = int(limit), False
            self._apply()
        elif self._adaptive and self.learned_rpm is not None:
            self.learned_rpm += max(1, self.learned_rpm // 100)  # additive recovery after a 429
            self._apply(force=True)
        tlimit = headers.get("x-ratelimit-limit-tokens")
        if tlimit and tlimit.isdigit() and self.tokens_per_minute is None:
            self.tokens_per_minute = int(tlimit)
            self._apply()
        remaining = headers.get("x-ratelimit-remaining-requests")
        if remaining == "0":
            reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
            if reset:
                until = time.monotonic() + reset
                self._paused_until = max(self._paused_until, until)
                self.requests.hold_until(until)


class Limits:
    """One :class:`KeyLimiter` per key, shared by every profile that resolves to it."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], KeyLimiter] = {}

    def get(
        self,
        key: tuple[str, str, str],
        *,
        max_concurrency: int,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> KeyLimiter:
        limiter = self._by_key.get(key)
        if limiter is None:
            limiter = KeyLimiter(max_concurrency, requests_per_minute, tokens_per_minute)
            self._by_key[key] = limiter
        return limiter

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_key.items())
