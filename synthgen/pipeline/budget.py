"""The dataset's budget: ``budget.max_usd`` holds across every invocation that builds a RUN_DIR.

Before an item is scheduled its estimated cost is reserved: what earlier invocations paid (their
journals), what this one paid (the client's meter) and the reservations of the items in flight must
stay within the cap, so in-flight work cannot push spend past it by more than its own estimation
error. An item's estimate is the larger of the dearest of a few of the step's items simulated
offline (the real prompts and call structure, priced with the profiles' prices) and the dearest item
that finished in this invocation, so a simulation that guessed short answers is corrected as soon as
real ones come back.
"""

from __future__ import annotations

import threading

from synthgen.llm.usage import UsageMeter

__all__ = ["Budget", "ItemCost"]


class Budget:
    """Reservations against ``max_usd`` (None: no budget, every reservation succeeds)."""

    def __init__(self, max_usd: float | None, *, spent_before: float, meter: UsageMeter) -> None:
        self.max_usd, self.spent_before, self.meter = max_usd, spent_before, meter
        self.reserved = 0.0
        self.exhausted = False
        self._lock = threading.Lock()

    @property
    def spent(self) -> float:
        """The dataset's spend so far: earlier invocations plus this one."""
        return self.spent_before + self.meter.spent_usd

    def reserve(self, estimate: float) -> bool:
        """Reserve ``estimate`` USD for one item; False (and exhausted) when it would pass the cap."""
        if self.max_usd is None:
            return True
        with self._lock:
            if self.spent + self.reserved + estimate > self.max_usd:
                self.exhausted = True
                return False
            self.reserved += estimate
            return True

    def release(self, estimate: float) -> None:
        """The item finished: what it really cost is in the meter now."""
        if self.max_usd is not None:
            with self._lock:
                self.reserved = max(0.0, self.reserved - estimate)


class ItemCost:
    """One step's per-item reservation: the simulation's dearest item, raised by dearer real ones."""

    def __init__(self, simulated: float) -> None:
        self.estimate = simulated

    def observe(self, cost: float) -> None:
        self.estimate = max(self.estimate, cost)
