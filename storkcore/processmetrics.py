"""One /metrics view per pod when several worker processes answer (the webhook's gunicorn
workers, and granian's old and new worker during the minute a certificate renewal overlaps them).

Without this, each worker keeps its own counters and a scrape reaches one worker at random:
counters seem to reset between scrapes and every total is under-counted. With it, the server's
main process makes a folder before it forks (`share_between_workers`); each worker keeps its
counters and histograms there (prometheus_client's multiprocess mode, switched on in the
worker before its metrics are made: `use_shared_values`), and a scrape, whichever worker
answers it, reads every worker's files (`WholePod`). Collectors computed when scraped (the
served certificate, the storage API's counters) are the answering worker's own, as each
worker computes the same values.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

ENV = "PROMETHEUS_MULTIPROC_DIR"  # the variable prometheus_client's multiprocess mode reads


def share_between_workers() -> str:
    """In the server's main process, before its workers start: a fresh folder for their values
    (removed when the main process exits)."""
    folder = tempfile.mkdtemp(prefix="stork-metrics-")
    os.environ[ENV] = folder
    main = os.getpid()
    atexit.register(lambda: os.getpid() == main and shutil.rmtree(folder, ignore_errors=True))
    return folder


def shared() -> bool:
    return bool(os.environ.get(ENV))


def use_shared_values() -> None:
    """In a worker, before it makes any metric: values go to the shared folder."""
    if shared() and values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()


class WholePod:
    """A collector: every worker's counters and histograms from the shared folder, and this
    worker's families that have none there (computed ones, and metrics nobody has touched)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        files = list(MultiProcessCollector(None, path=os.environ[ENV]).collect())
        names = {family.name for family in files}
        yield from files
        for family in self.registry.collect():
            if family.name not in names:
                yield family


def exposition_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What /metrics serves: the registry itself, or the whole pod's view when workers share."""
    if not shared():
        return registry
    whole = CollectorRegistry(auto_describe=False)
    whole.register(WholePod(registry))
    return whole
