"""A Secret projected into a folder the way kubelet does it, for processes that run here
outside a pod (the harness's webhook and extender).

kubelet writes every key into a fresh timestamped folder, points the `..data` symlink at it
with one rename, and each key is a symlink through `..data`: a reader sees the old set of
files or the new one, never a mix. We keep that layout (so the servers' reload logic meets
what it meets in a pod) and poll the Secret every `period` seconds (kubelet's sync is about a
minute; tests want seconds). On a cluster, kubelet does this, not this module.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import shutil
import threading
from pathlib import Path

from storkcore.kube import SECRETS, ApiError, Kube

log = logging.getLogger(__name__)


class SecretVolume:
    def __init__(self, kube: Kube, namespace: str, name: str, folder: Path, period: float = 1.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.folder = folder
        self.period = period
        self.updates = 0  # times the files changed
        self._version = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Project once (the Secret must exist), then follow it in the background."""
        if not self.sync():
            raise LookupError(f"Secret {self.namespace}/{self.name} not found")
        self._thread = threading.Thread(target=self._follow, name=f"secret-volume-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _follow(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sync()
            except (ApiError, OSError) as err:  # the apiserver restarting: try again next period
                log.warning("secret volume sync failed", extra={"error": str(err)[:200]})

    def sync(self) -> bool:
        secret = self.kube.get(SECRETS, self.namespace, self.name)
        if secret is None:
            return False
        version = secret["metadata"]["resourceVersion"]
        if version != self._version:
            self._project({k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()})
            self._version = version
            self.updates += 1
        return True

    def _project(self, files: dict[str, bytes]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        payload = self.folder / stamp
        payload.mkdir(mode=0o755)
        for key, data in files.items():
            (payload / key).write_bytes(data)
            (payload / key).chmod(0o600 if key.endswith(".key") else 0o644)
        data_link = self.folder / "..data"
        previous = os.readlink(data_link) if data_link.is_symlink() else None
        staging = self.folder / "..data_tmp"
        staging.unlink(missing_ok=True)
        staging.symlink_to(stamp)
        os.replace(staging, data_link)  # the one atomic switch
        for key in files:
            link = self.folder / key
            if not link.is_symlink():
                link.symlink_to(Path("..data") / key)
        if previous:
            shutil.rmtree(self.folder / previous, ignore_errors=True)
