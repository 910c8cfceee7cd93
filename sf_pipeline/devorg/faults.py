"""Fault injection: make the org fail the way real orgs do, at a rate or on the next N requests.

A `5xx` fault with `after=True` lets the request run to its end (records created, updated, undeleted,
committed) and then answers 5xx instead of the result: what a client sees when a proxy or the network
fails after the org committed. Salesforce has no idempotency key on REST API or sObject Collections
writes (only UI API `/ui-api/records` takes an `Idempotency-Key`), and names this very case as the one
that duplicates records on a retry ("Prevent Record Duplication with Idempotent Record Writes",
https://developer.salesforce.com/docs/atlas.en-us.uiapi.meta/uiapi/ui_api_features_records_idempotent.htm).
"""

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
    after: bool = False  # 5xx only: carry the request out first, then answer 5xx (the write is applied)
    method: str = ""  # only requests of this HTTP method (e.g. POST), any when empty
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

    def add(
        self,
        kind: str,
        *,
        rate: float = 0.0,
        next: int = 0,
        status: int = 503,
        delay: float = 2.0,
        path: str = "",
        after: bool = False,
        method: str = "",
    ) -> FaultRule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; choose one of {', '.join(KINDS)}")
        if not rate and not next:
            raise ValueError("a fault needs --rate (0..1] or --next N")
        if after and kind != "5xx":
            raise ValueError("only a 5xx fault can fire after the request was carried out (after=True)")
        rule = FaultRule(
            kind, rate=rate, next=next, status=status, delay=delay, path=path, after=after, method=method.upper()
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, path: str, kinds: tuple[str, ...] = KINDS, method: str = "") -> FaultRule | None:
        """The rule that fires for this request, if any (consuming one of its `next` shots)."""
        with self._lock:
            for rule in self.rules:
                if rule.kind not in kinds or (rule.path and rule.path not in path):
                    continue
                if rule.method and method and rule.method != method.upper():
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
