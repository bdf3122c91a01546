"""A real Prometheus (Debian's package) on loopback, started and stopped by the test."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

from tests.support.daemon import Daemon

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def prometheus_missing() -> str | None:
    """Why a real Prometheus cannot run here, or None."""
    for tool in (PROMETHEUS, PROMTOOL):
        if not Path(tool).exists():
            return f"{tool} not installed (scripts/test installs Debian's prometheus)"
    return None


class PrometheusServer(Daemon):
    """Prometheus with a generated config; `args` adds flags (e.g. the remote-write receiver)."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        scrape_configs: list[dict[str, Any]] | None = None,
        args: list[str] | None = None,
        global_config: dict[str, Any] | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.scrape_configs = scrape_configs or []
        self.args = args or []
        self.global_config = global_config or {"scrape_interval": "1s", "evaluation_interval": "1s"}
        self.extra_config = extra_config or {}

    def argv(self) -> list[str]:
        config = self.workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": self.global_config,
                    "scrape_configs": self.scrape_configs,
                    **self.extra_config,
                }
            )
        )
        return [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            *self.args,
        ]

    def start(self, timeout: float = 30) -> Self:
        return super().start(timeout)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; returns the result vector (raises on a query error)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return list(body["data"]["result"])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)
