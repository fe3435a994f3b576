"""The rate limiter on its own: what it promises about its own sends, without a server's jitter.

The end-to-end tests in ``test_client.py`` show that a real server accepts the pace; these show
the pace itself, exactly, on the limiter's own record of when each request was let through.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from synthgen.llm.limits import _CAP_WINDOW, KeyLimiter, Limits, Pacer, parse_reset


def most_in_any_window(stamps: list[float], window: float) -> int:
    stamps = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def let_through(limiter: KeyLimiter, n: int, *, busy: float = 0.0, seed: int = 0) -> list[float]:
    """Run ``n`` requests through the limiter; each holds its slot for a random few ms."""
    rng = random.Random(seed)
    stamps: list[float] = []

    async def one(i: int) -> None:
        async with limiter.slot():
            stamps.append(time.monotonic())
            if busy and i % 7 == 3:
                time.sleep(busy)  # noqa: ASYNC251 - on purpose: a blocked event loop: slots reserved for now are served late
            await asyncio.sleep(rng.uniform(0.0, 0.01))

    await asyncio.gather(*(one(i) for i in range(n)))
    return stamps


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("", None),
        ("soon", None),
    ],
)
def test_reset_durations_parse_like_openai_writes_them(text: str, seconds: float | None) -> None:
    assert parse_reset(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_pacer_spaces_reservations_evenly_with_a_burst_of_one() -> None:
    pacer = Pacer(rate=10.0)
    delays = [pacer.reserve() for _ in range(5)]
    assert delays[0] == 0.0
    # reservations made at (almost) the same instant are spaced 1/rate apart
    assert [round(b - a, 3) for a, b in itertools.pairwise(delays)] == [0.1] * 4
    assert Pacer(rate=None).reserve() == 0.0


def test_a_large_token_cost_waits_for_its_whole_cost() -> None:
    pacer = Pacer(rate=100.0, burst=10.0)
    assert pacer.reserve(10.0) == 0.0  # the burst covers one 10-token request
    assert pacer.reserve(50.0) == pytest.approx(0.1, abs=0.01)  # then 50 tokens take the first 10's time


async def test_the_limiter_never_lets_more_than_the_limit_through_in_any_window() -> None:
    limiter = KeyLimiter(max_concurrency=64, requests_per_minute=3000)  # 50 per second
    t0 = time.monotonic()
    stamps = await let_through(limiter, 120)
    elapsed = time.monotonic() - t0
    assert most_in_any_window(stamps, _CAP_WINDOW) <= 50
    assert most_in_any_window(stamps, 60.0) <= 3000
    # ... and not much less: 120 requests at 98% of 50/s, the first one free
    assert 119 / 50 <= elapsed <= 119 / (50 * 0.9) + 1.0  # (half the rate would take 4.8 s)


async def test_slots_served_late_by_a_blocked_loop_do_not_bunch_past_the_cap() -> None:
    # The pacer reserves send times ahead; when the loop is blocked, several reserved times pass
    # at once. The per-second cap on actual sends keeps them from going out together.
    limiter = KeyLimiter(max_concurrency=64, requests_per_minute=1200)  # 20 per second
    stamps = await let_through(limiter, 60, busy=0.15)
    assert most_in_any_window(stamps, _CAP_WINDOW) <= 20


async def test_concurrency_is_bounded_by_the_semaphore() -> None:
    limiter = KeyLimiter(max_concurrency=3, requests_per_minute=10**6)
    inside = peak = 0

    async def one() -> None:
        nonlocal inside, peak
        async with limiter.slot():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(one() for _ in range(12)))
    assert peak == 3


async def test_with_no_known_limit_the_first_request_goes_alone() -> None:
    limiter = KeyLimiter(max_concurrency=8)
    order: list[str] = []

    async def one(i: int) -> None:
        async with limiter.slot():
            order.append(f"start {i}")
            if i == 0:
                await asyncio.sleep(0.05)
                limiter.learn({"x-ratelimit-limit-requests": "6000"})
            order.append(f"end {i}")

    await asyncio.gather(*(one(i) for i in range(4)))
    assert order[:2] == ["start 0", "end 0"]  # nobody started while the probe was out
    assert limiter.learned_rpm == 6000 and limiter.known_rpm == 6000


def test_a_configured_limit_wins_over_an_announced_higher_one() -> None:
    limiter = KeyLimiter(max_concurrency=8, requests_per_minute=600)
    limiter.learn({"x-ratelimit-limit-requests": "10000"})
    assert limiter.known_rpm == 600


def test_a_429_with_no_announced_limit_lowers_the_pace_and_successes_raise_it_again() -> None:
    limiter = KeyLimiter(max_concurrency=8)
    now = time.monotonic()
    limiter._starts.extend(now - 9.0 + i * 0.3 for i in range(30))  # 30 sent over the last 9 s: 200/min
    applied = limiter.pause(0.5)
    assert 0.5 <= applied <= 0.5 * 1.25  # jittered, never shorter than asked
    assert limiter.pauses == 1
    lowered = limiter.learned_rpm
    assert lowered is not None and lowered <= 0.9 * 200 + 1
    assert limiter.requests.rate == pytest.approx(lowered * 0.98 / 60.0)
    for _ in range(5):
        limiter.learn({})
    assert limiter.learned_rpm is not None and limiter.learned_rpm > lowered


def test_an_exhausted_window_holds_every_request_until_its_reset() -> None:
    limiter = KeyLimiter(max_concurrency=8, requests_per_minute=6000)
    before = time.monotonic()
    limiter.learn({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"})
    assert limiter.requests.reserve() >= 2.0 - (time.monotonic() - before) - 0.01


def test_limiters_are_shared_per_key() -> None:
    limits = Limits()
    a = limits.get(("u", "m", "K"), max_concurrency=4)
    assert limits.get(("u", "m", "K"), max_concurrency=99) is a
    assert limits.get(("u", "m2", "K"), max_concurrency=4) is not a
    assert [key for key, _ in limits] == [("u", "m", "K"), ("u", "m2", "K")]


def answered(limiter: KeyLimiter, n: int) -> None:
    for _ in range(n):
        limiter.learn({})


def test_scattered_429s_retry_alone_and_never_pause_the_key() -> None:
    limiter = KeyLimiter(max_concurrency=64)
    refusal = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    for _ in range(10):  # 5% of the answers refused, as a proxy's or an overloaded server's 429s come
        answered(limiter, 19)
        assert limiter.refused(time.monotonic(), 1.0, refusal) is False
    assert limiter.rate_limited == 10 and limiter.pauses == 0
    assert limiter.paused_for() == 0.0  # nobody else waits


def test_a_burst_of_429s_pauses_the_key_once_for_what_was_sent_before_it() -> None:
    limiter = KeyLimiter(max_concurrency=64)
    answered(limiter, 4)
    sent = time.monotonic()
    assert [limiter.refused(sent, 0.5) for _ in range(3)] == [False, False, True]
    assert limiter.pauses == 1
    assert limiter.paused_for() >= 0.45  # every request of the key waits for the retry-after
    # the other requests of the burst, sent before the pause began, come back refused too: same news
    assert not any(limiter.refused(sent, 0.5) for _ in range(20))
    assert limiter.pauses == 1
    # a request sent after the pause that is refused in a burst is new evidence: a second window
    assert limiter.refused(time.monotonic(), 0.5) is True
    assert limiter.pauses == 2


def test_remaining_zero_pauses_at_once_only_from_a_server_that_states_it_on_answers() -> None:
    exhausted = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "800ms"}
    silent = KeyLimiter(max_concurrency=8)
    answered(silent, 20)  # answers without x-ratelimit headers: the refusal's 0 is boilerplate
    assert silent.refused(time.monotonic(), None, exhausted) is False
    stating = KeyLimiter(max_concurrency=8)
    stating.learn({"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "7"})
    answered(stating, 19)
    assert stating.refused(time.monotonic(), None, exhausted) is True
    assert stating.paused_for() >= 0.75  # held for the window's reset (no retry-after given)


def test_an_announced_limit_lower_than_the_configured_one_wins() -> None:
    limiter = KeyLimiter(max_concurrency=8, requests_per_minute=6000)
    limiter.learn({"x-ratelimit-limit-requests": "600"})  # the account's, whatever the profile says
    assert limiter.known_rpm == 600
