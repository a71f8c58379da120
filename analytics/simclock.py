"""A day run on a moved clock: timed actions, each run at its moment with the clock moved there (time-machine).
The made-up history (`seed_history`) and the replay of a recorded day (`replay`) drive Relay's own actions so."""

import contextlib
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import time_machine

from core.errors import DomainError


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    action: Callable = field(compare=False)


class TimedActions:
    """A queue of actions by time; `play` runs them in order, calling `after_each` after every one."""

    def __init__(self):
        self.queue: list[_Event] = []
        self.seq = itertools.count()

    def at(self, when: datetime, action: Callable) -> None:
        heapq.heappush(self.queue, _Event(when, next(self.seq), action))

    def play(self, start: datetime, *, until: datetime, after_each: Callable[[], None], finish: Callable[[], None]):
        """Run every action at its moment (none after `until`), then `finish` with the clock at `until`."""
        with time_machine.travel(start, tick=False) as clock:
            while self.queue and self.queue[0].at <= until:
                event = heapq.heappop(self.queue)
                clock.move_to(event.at)
                # DomainError: the world moved on (an offer already withdrawn, a delivery cancelled), as in real life.
                with contextlib.suppress(DomainError):
                    event.action()
                after_each()
            clock.move_to(until)
            finish()
