"""Client-side rate limits, keyed by (base URL, model, key env) because providers limit per
account and model, not per recipe role.

Each key gets a concurrency semaphore and two pacers (requests and tokens). A pacer is a GCRA
("virtual scheduling"): every caller reserves its own send time at once and sleeps until it, so
there is no polling, no thundering herd and no thread. Requests are paced at just under the limit
with a burst of one, so any 60 s window holds at most the limit, and a cap on actual sends keeps
any 1 s window within a second's share (OpenAI enforces 3000/min as 50 in any second too). No
burst on purpose: the cap counts sends, the server counts arrivals, and a burst's requests on
fresh connections arrive late enough to bunch with the next second's (6 of 25 refused in a test).
Limits not configured are learned from ``x-ratelimit-*`` headers.

A 429 is not always the account's limit: proxies, overloaded servers and providers' own hiccups
send scattered ones. A refused request retries alone after its jittered ``retry-after``; the whole
key pauses only on evidence that the account is at its limit (:meth:`KeyLimiter.refused`): the
server, which states its remaining quota on its answers, says 0 is left, or refusals are a burst
(several, and a quarter of the answers of the last 2 s). A request sent before the last pause began
cannot call for another (its refusal predates what the pause acted on): one pause per window, not
one per 429. When no limit is known, a pause also lowers the pace to what the server accepted.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["KeyLimiter", "Limits", "parse_reset"]

_HEADROOM = 0.98  # pace at 98% of a limit: clock skew and jitter never tip a window over it
_CAP_WINDOW = 1.02  # seconds: the per-second cap's window, 2% long for the same reason
_BURST_WINDOW = 2.0  # seconds of answers read to tell a burst of refusals from scattered ones
_BURST_MIN = 3  # refusals in that window before they can mean the account's limit ...
_BURST_SHARE = 0.25  # ... and their least share of the window's answers (5% scattered 429s never reach it)
_REMAINING = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")
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
        """Nothing goes before ``when``; from then on evenly paced (the burst is not refilled)."""
        spare = (self.burst - 1.0) / self.rate if self.rate else 0.0
        self._tat = max(self._tat, when + spare)

    def sent(self, at: float) -> None:
        """Count one unit sent at ``at`` (before the rate was known) against the rate."""
        if self.rate:
            self._tat = max(self._tat, at + 1.0 / self.rate)


class _Slot:
    """``async with limiter.slot(tokens) as sent_at``: a class, not a generator context manager,
    since it runs for every request (about 3x cheaper in CPU)."""

    __slots__ = ("_limiter", "_prober", "_tokens")

    def __init__(self, limiter: KeyLimiter, tokens: int) -> None:
        self._limiter, self._tokens, self._prober = limiter, tokens, False

    async def __aenter__(self) -> float:
        limiter = self._limiter
        await limiter._semaphore.acquire()
        try:
            self._prober = await limiter._admit(self._tokens)
        except BaseException:
            limiter._semaphore.release()
            raise
        now = time.monotonic()
        limiter._starts.append(now)
        return now

    async def __aexit__(self, *exc: object) -> None:
        limiter = self._limiter
        if self._prober and limiter._probe is not None:
            limiter._probe.set()
        limiter._semaphore.release()


@dataclass
class KeyLimiter:
    """Limits for one (base URL, model, key env)."""

    max_concurrency: int
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    requests: Pacer = field(init=False)
    tokens: Pacer = field(init=False)
    learned_rpm: int | None = None
    rate_limited: int = 0  # refusals seen (429s, and 503s that ask to wait)
    pauses: int = 0  # pauses of the whole key they caused
    _semaphore: asyncio.Semaphore = field(init=False)
    _paused_until: float = 0.0
    _pause_began: float = float("-inf")
    _starts: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    _answers: deque[tuple[float, bool]] = field(default_factory=deque)  # (when, refused), last 2 s
    _refusals: int = 0  # refused answers in ``_answers``
    _reports_limits: bool = False  # the server states remaining quota on its answers
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
                self.requests.sent(self._starts[-1])
        if self.tokens_per_minute:
            self.tokens.rate = self.tokens_per_minute * _HEADROOM / 60.0
            self.tokens.burst = self.tokens_per_minute * (1 - _HEADROOM)

    def slot(self, tokens: int = 0) -> _Slot:
        """Hold one concurrency slot, paced by requests and tokens per minute; yields the send time.

        With no request limit configured or learned yet, the first request of a key goes alone:
        its response headers usually announce the limits, so a cold start cannot burst past them.
        """
        return _Slot(self, tokens)

    async def _admit(self, tokens: int) -> bool:
        """Wait for the probe, the pacers, a pause and the per-second cap; True for the prober."""
        prober = False
        if self._probe is None and not self.known_rpm:
            self._probe, prober = asyncio.Event(), True
        elif self._probe is not None and not self._probe.is_set():
            await self._probe.wait()
        if self.requests.rate is None and not tokens and self._paused_until == 0.0:
            return prober  # nothing known to wait for: the common unlimited case, at no cost
        try:
            await self._wait_turn(tokens)
        except BaseException:
            if prober and self._probe is not None:
                self._probe.set()  # a cancelled probe must not hold every other request of the key
            raise
        return prober

    async def _wait_turn(self, tokens: int) -> None:
        delay = max(self.requests.reserve(1.0), self.tokens.reserve(float(tokens)) if tokens else 0.0)
        delay = max(delay, self._paused_until - time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)
        # Pacing reserves slots ahead; a slot served late (a busy loop) would bunch with the next
        # one. Providers enforce sub-minute windows too, so cap actual sends per second, over a
        # window 2% longer than a second: network jitter up to 20 ms cannot tip the server's over.
        # A pause that began while this request slept on its reservation holds it too.
        while (wait := max(self._cap_wait(), self._paused_until - time.monotonic())) > 0:  # noqa: ASYNC110 - a clock, not an event, ends the wait
            await asyncio.sleep(wait)

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
        rpm, learned = self.requests_per_minute, self.learned_rpm
        if rpm and learned:
            return min(rpm, learned)
        return rpm or learned or None

    def refused(self, sent_at: float, after: float | None, headers: Mapping[str, str] | None = None) -> bool:
        """A 429 (or a 503 that asks to wait) for a request sent at ``sent_at``; True if the key paused.

        Only evidence of the account's limit pauses every request of the key: the remaining quota at 0
        from a server that states it on its answers too (a proxy's or an overloaded server's 429
        carries the header on the refusal alone), or a burst of refusals. Otherwise only this request
        waits: its retry's jittered ``retry-after``.
        """
        now = time.monotonic()
        self.rate_limited += 1
        self._note(now, refused=True)
        if sent_at < self._pause_began:
            return False  # sent before the last pause began: that pause already acted on its news
        exhausted = (
            headers is not None
            and self._reports_limits
            and any(headers.get(name) == "0" for name in _REMAINING)
        )
        # the share is of at least 4 * _BURST_MIN answers: the first few answers of a run are no sample
        answers = max(len(self._answers), 4 * _BURST_MIN)
        burst = self._refusals >= _BURST_MIN and self._refusals >= _BURST_SHARE * answers
        if not (exhausted or burst):
            return False
        reset = None
        if headers is not None:
            reset = parse_reset(headers.get("x-ratelimit-reset-requests")) or parse_reset(
                headers.get("x-ratelimit-reset-tokens")
            )
        self.pause(after or reset or 1.0)
        return True

    def paused_for(self) -> float:
        """Seconds until the key's pause ends (0: not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    def _note(self, now: float, *, refused: bool) -> None:
        """Keep the last ``_BURST_WINDOW`` s of answers: what a refusal's share is read from."""
        answers = self._answers
        answers.append((now, refused))
        self._refusals += refused
        horizon = now - _BURST_WINDOW
        while answers[0][0] < horizon:
            self._refusals -= answers.popleft()[1]

    def pause(self, seconds: float) -> float:
        """Pause every request of this key (the account is at its limit); returns the jittered pause."""
        self.pauses += 1
        now = time.monotonic()
        self._pause_began = now
        seconds = max(seconds, 0.01) * (1.0 + random.random() * 0.25)
        until = now + seconds
        self._paused_until = max(self._paused_until, until)
        if self.learned_rpm is None or self._adaptive:
            # no limit announced (a configured one was refused: it is too high): multiplicative
            # decrease to 90% of the rate just refused; successes raise it again (see learn), so one
            # spurious pause does not cap a run for good
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
        """Note an answer; adopt limits a server announces (``x-ratelimit-limit-requests``/``-tokens``)."""
        self._note(time.monotonic(), refused=False)
        limit = headers.get("x-ratelimit-limit-requests")
        # a configured limit wins over an announced higher one, never over a lower one (the account's)
        if (
            limit
            and limit.isdigit()
            and int(limit) != self.learned_rpm
            and (self.requests_per_minute is None or int(limit) < self.requests_per_minute)
        ):
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
        if remaining is not None or "x-ratelimit-remaining-tokens" in headers:
            self._reports_limits = True
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
