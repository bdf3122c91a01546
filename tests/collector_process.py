"""Running kipu-collector as a real process in tests: configure, issue tokens, start, wait
for health, stop by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.agent_process import free_port, loopback_get
from tests.metrics_util import Scrape, parse, wait_until

ROOT = Path(__file__).resolve().parents[1]

SITES = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012 Racracalla, project: junin, ubigeo: "120206",
         institution_type: school, institution_code: "0123456", upstream_node: nodo-concepcion,
         access_tech: microwave, latitude: -11.92, longitude: -75.31}
      - {site_id: jun-0002, site_name: Puesto de Salud Comas, project: junin, ubigeo: "120206",
         institution_type: health, upstream_node: nodo-concepcion, access_tech: 4g}
      - {site_id: hco-0007, site_name: Puesto de Salud Monzón, project: huanuco,
         ubigeo: "100507", institution_type: health, upstream_node: nodo-tingo-maria,
         access_tech: satellite}
    """
)


def run_collector_cli(
    *args: str, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `kipu-collector ARGS` to completion."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=stdin,
        check=False,
    )


def write_collector(
    directory: Path, extra: str = "", sites: str = SITES, name: str = "collector.yaml"
) -> Path:
    """A collector configuration in `directory` (state in `directory/state`)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sites.yaml").write_text(sites)
    path = directory / name
    path.write_text(f"inventory: sites.yaml\nstate_dir: state\nsilent_after: 2s\n{extra}")
    return path


def issue_token(config: Path, site_id: str) -> str:
    """A new token for `site_id` (through the CLI, as an operator would)."""
    result = run_collector_cli("token", "issue", site_id, f"--config.file={config}")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class CollectorProcess:
    """kipu-collector in a subprocess on a free loopback port."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config, self.log_path = config, log
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def start(self, wait: bool = True) -> CollectorProcess:
        argv = [
            sys.executable,
            "-m",
            "collector",
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        if wait:
            wait_until(self.healthy, timeout=30)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log()}")
        try:
            status, _ = loopback_get("127.0.0.1", self.port, "/healthz")
        except OSError:
            return False
        return status == 200

    def scrape(self) -> Scrape:
        status, body = loopback_get("127.0.0.1", self.port, "/metrics")
        assert status == 200, body
        return parse(body.decode())

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Send `sig` to the collector's PID and wait for it to exit; its exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise
        return int(self.proc.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
