"""How simulated drivers behave: the answer mix for offers and the odds of breaks, releases and going stale.
Pure: every choice takes the random source, so a seed replays the same choices."""

import random
from dataclasses import dataclass

ANSWERS = ("accept", "decline", "ignore")
DECLINE_REASONS = ("too_far", "busy", "vehicle", "other")


def _roll(rng: random.Random, odds: list[tuple[float, str]], *, otherwise: str) -> str:
    """One roll of `rng` against `(chance, outcome)` odds taken in turn; past all of them, `otherwise`."""
    roll, bound = rng.random(), 0.0
    for chance, outcome in odds:
        bound += chance
        if roll < bound:
            return outcome
    return otherwise


@dataclass(frozen=True)
class Mix:
    """Shares of offers accepted, declined (with a reason) and ignored (left to expire)."""

    accept: float = 0.8
    decline: float = 0.1
    ignore: float = 0.1

    @classmethod
    def parse(cls, text: str) -> "Mix":
        """`accept=0.8,decline=0.1,ignore=0.1`; missing answers count 0, shares are normalised to sum 1."""
        shares = dict.fromkeys(ANSWERS, 0.0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in shares:
                raise ValueError(f"expected answer=share with answer one of {', '.join(ANSWERS)}, got {part!r}")
            try:
                share = float(value)
            except ValueError:
                raise ValueError(f"share of {name} must be a number, got {value!r}") from None
            if share < 0:
                raise ValueError(f"share of {name} must not be negative")
            shares[name] = share
        total = sum(shares.values())
        if total <= 0:
            raise ValueError("at least one share must be positive")
        return cls(**{name: share / total for name, share in shares.items()})

    def choose(self, rng: random.Random) -> str:
        return _roll(rng, [(self.accept, "accept"), (self.decline, "decline")], otherwise="ignore")


@dataclass(frozen=True)
class Habits:
    """Odds per completed delivery (break, stale) or per accepted job (release), and how long things take.
    Durations are in simulated seconds unless they say `real`: staleness is judged by the server's own clock."""

    break_chance: float = 0.1
    break_s: tuple[float, float] = (300, 900)
    release_chance: float = 0.05
    stale_chance: float = 0.03
    stale_real_s: tuple[float, float] = (110, 140)  # past the server's 90 s limit plus its 15 s sweep
    back_online_real_s: tuple[float, float] = (10, 30)
    answer_real_s: tuple[float, float] = (0.3, 2.5)
    service_s: tuple[float, float] = (30, 90)

    def after_delivery(self, rng: random.Random) -> str:
        """What a driver does once a delivery is done: `work` on, take a `break`, or go `stale`."""
        return _roll(rng, [(self.stale_chance, "stale"), (self.break_chance, "break")], otherwise="work")

    def releases(self, rng: random.Random) -> bool:
        return rng.random() < self.release_chance


def decline_reason(rng: random.Random) -> str:
    return rng.choice(DECLINE_REASONS)


def seeded(seed: int | str | None, name: str) -> random.Random:
    """A random source per actor: the same seed and name give the same choices, whatever the others do."""
    return random.Random(f"{seed}:{name}") if seed is not None else random.Random()
