"""Fault injection: make the org fail the way real orgs do, at a rate or on the next N requests."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

KINDS = ("5xx", "lock", "drop", "slow")


@dataclass
class FaultRule:
    kind: str  # 5xx | lock | drop | slow
    rate: float = 0.0  # probability per matching request
    next: int = 0  # or: fire on the next N matching requests
    status: int = 503  # for 5xx
    delay: float = 2.0  # seconds, for slow
    path: str = ""  # only requests whose path contains this text
    fired: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class FaultInjector:
    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, kind: str, *, rate: float = 0.0, next: int = 0, status: int = 503, delay: float = 2.0,
            path: str = "") -> FaultRule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(KINDS)}")
        if not rate and not next:
            raise ValueError("a fault needs --rate (0..1] or --next N")
        rule = FaultRule(kind, rate=rate, next=next, status=status, delay=delay, path=path)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, path: str, kinds: tuple[str, ...] = KINDS) -> FaultRule | None:
        """The rule that fires for this request, if any (consuming one of its `next` shots)."""
        with self._lock:
            for rule in self.rules:
                if rule.kind not in kinds or (rule.path and rule.path not in path):
                    continue
                if rule.next > 0:
                    rule.next -= 1
                    rule.fired += 1
                    return rule
                if rule.rate and self._random.random() < rule.rate:
                    rule.fired += 1
                    return rule
            self.rules = [r for r in self.rules if r.next > 0 or r.rate]
        return None
