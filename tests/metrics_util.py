"""Reading scrapes in tests: parsed with prometheus-client's parser, never by string search."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    """Samples of one scrape, keyed by sample name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    types: dict[str, str]

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        found = self.get(name, **labels)
        assert found is not None, f"no sample {name}{labels}"
        return found

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(lbls)[label] for n, lbls in self.samples if n == name and label in dict(lbls)}


def parse(text: str) -> Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, types)


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, step: float = 0.02
) -> None:
    """Poll `check` until it holds; fail with a clear message at the deadline."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check}")
        await asyncio.sleep(step)


def wait_until(check: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    """The synchronous twin of `eventually`."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check}")
        time.sleep(step)
