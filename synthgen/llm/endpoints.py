"""Several endpoints serving one model: which one gets the next request, and which are out of rotation.

A self-hosted teacher on several GPUs or nodes (vLLM data parallel, one server per GPU) is a list of
base URLs in one profile (``base_url: [http://gpu1:8000/v1, http://gpu2:8000/v1]``). Each attempt of a
request leases one endpoint: the one with the fewest requests in flight (queued at its limiter or on the
wire), ties taken in turn, so a slower server gets fewer. An endpoint that refuses or drops a
connection leaves the rotation at once, one that answers ``SERVER_ERRORS_OUT`` 5xx in a row too; the
request's next attempt goes to another endpoint without a backoff. After a cool-down (1 s, doubling to
30 s while it stays down) one real request probes it (half-open): an answer brings it back, a failure
doubles the wait. With every endpoint out, requests go to the one due first and the retries' backoff
paces them, as with a single URL. Each endpoint keeps its own limiter (concurrency, RPM, TPM): a
profile's limits are per server. The pool does no I/O and starts no task: it is bookkeeping around the
client's own attempts (:mod:`synthgen.llm.client`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openai
from tenacity import RetryCallState

from synthgen.llm.profile import ModelProfile

__all__ = ["Endpoint", "EndpointPool"]

log = logging.getLogger("synthgen.llm.endpoints")

SERVER_ERRORS_OUT = 3  # consecutive 5xx answers that take an endpoint out (one is often a blip)
FIRST_COOLDOWN = 1.0  # seconds out of rotation before the first probe
MAX_COOLDOWN = 30.0  # a node that stays down is probed at least this often


@dataclass
class Endpoint:
    """One base URL of a pool and what the pool knows about it."""

    url: str
    profile: ModelProfile  # the pool's profile with this URL alone: its own HTTP pool and limiter
    in_flight: int = 0
    sent: int = 0  # attempts leased to it
    answered: int = 0  # attempts that got an HTTP answer
    server_errors: int = 0  # 5xx in a row
    out_until: float = 0.0  # monotonic time it may be probed again; 0.0: in rotation
    cooldown: float = FIRST_COOLDOWN
    probing: bool = False
    times_out: int = 0  # how often it left the rotation

    @property
    def in_rotation(self) -> bool:
        return self.out_until == 0.0


class EndpointPool:
    """The endpoints of one profile (same model, same key): least in-flight, out on failure, probed back."""

    def __init__(self, profile: ModelProfile) -> None:
        self.name = profile.name or profile.model
        self.endpoints = [Endpoint(url, profile.at(url)) for url in profile.endpoints]
        self._turn = 0

    def pick(self) -> tuple[Endpoint, bool]:
        """The endpoint for the next attempt, and whether that attempt probes it (not leased yet)."""
        now = time.monotonic()
        due = [e for e in self.endpoints if not e.in_rotation and not e.probing and now >= e.out_until]
        if due:  # half-open: one real request finds out whether it is back
            chosen = min(due, key=lambda e: e.out_until)
            chosen.probing = True
            return chosen, True
        live = [e for e in self.endpoints if e.in_rotation]
        if not live:  # all out: the one due first; the retries' backoff paces these attempts
            return min(self.endpoints, key=lambda e: e.out_until), False
        fewest = min(e.in_flight for e in live)
        ties = [e for e in live if e.in_flight == fewest]
        self._turn += 1
        return ties[self._turn % len(ties)], False

    @contextmanager
    def lease(self) -> Iterator[ModelProfile]:
        """Hold one endpoint for one attempt (limiter wait included); its outcome updates its health."""
        endpoint, probe = self.pick()
        # only an attempt sent while it was out says it is back: one sent before (answered during a
        # graceful shutdown, say) does not
        fresh = probe or not endpoint.in_rotation
        endpoint.in_flight += 1
        endpoint.sent += 1
        try:
            yield endpoint.profile
        except BaseException as exc:
            self._failed(endpoint, exc, probe, fresh)
            raise
        else:
            self._answered(endpoint, fresh)
        finally:
            endpoint.in_flight -= 1
            if probe:
                endpoint.probing = False

    def _answered(self, endpoint: Endpoint, fresh: bool) -> None:
        endpoint.answered += 1
        endpoint.server_errors = 0
        if not endpoint.in_rotation and fresh:
            endpoint.out_until, endpoint.cooldown = 0.0, FIRST_COOLDOWN
            log.warning(
                "%s answers again: back in the rotation of %r (%s)", endpoint.url, self.name, self._live()
            )

    def _failed(self, endpoint: Endpoint, exc: BaseException, probe: bool, fresh: bool) -> None:
        if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out: aiohttp says timeout
            self._take_out(endpoint, "cannot be reached", probe)
        elif isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
            endpoint.answered += 1
            endpoint.server_errors += 1
            if endpoint.server_errors >= SERVER_ERRORS_OUT or probe:
                self._take_out(endpoint, f"answered {endpoint.server_errors} server errors in a row", probe)
        elif isinstance(exc, openai.APIStatusError):  # a 4xx (429 included) is an answer: it is up
            self._answered(endpoint, fresh)
        # cancelled, or the client's own error: says nothing about the server

    def _take_out(self, endpoint: Endpoint, why: str, probe: bool) -> None:
        now = time.monotonic()
        if endpoint.in_rotation:
            endpoint.cooldown = FIRST_COOLDOWN
            endpoint.times_out += 1
            endpoint.out_until = now + endpoint.cooldown
            log.warning(
                "%s %s: out of the rotation of %r, probed again in %.0f s (%s)",
                endpoint.url, why, self.name, endpoint.cooldown, self._live(),
            )  # fmt: skip
        elif probe:  # the probe failed: wait longer
            endpoint.cooldown = min(endpoint.cooldown * 2, MAX_COOLDOWN)
            endpoint.out_until = now + endpoint.cooldown
        # else: an attempt leased before it went out failed too; the cool-down already runs

    def _live(self) -> str:
        return f"{sum(e.in_rotation for e in self.endpoints)} of {len(self.endpoints)} endpoints in rotation"

    def wait(self, backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
        """The retries' wait: none after a connection failure while another endpoint is in rotation (the
        next attempt goes there), else ``backoff``."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, openai.APIConnectionError) and any(e.in_rotation for e in self.endpoints):
                return 0.0
            return backoff(state)

        return wait

    def stats(self) -> dict[str, dict[str, int | bool]]:
        """Per URL: attempts sent and answered, times out of rotation, and whether it is in rotation now."""
        return {
            e.url: {
                "sent": e.sent,
                "answered": e.answered,
                "times_out": e.times_out,
                "in_rotation": e.in_rotation,
            }
            for e in self.endpoints
        }
