"""Running kipu-agent as a real process in tests: start, wait for health, stop by PID."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from tests.metrics_util import Scrape, parse, wait_until

HttpGet = Callable[[str, int, str], tuple[int, bytes]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def loopback_post(host: str, port: int, path: str) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{host}:{port}{path}", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


class AgentProcess:
    """kipu-agent in a subprocess; `prefix` runs it elsewhere (e.g. ip netns exec NS)."""

    def __init__(
        self,
        config: Path,
        port: int,
        log: Path,
        *,
        prefix: Sequence[str] = (),
        http_get: HttpGet = loopback_get,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.config, self.port, self.log_path = config, port, log
        self.prefix, self.http_get, self.extra_args = list(prefix), http_get, list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = env or {}

    def start(self, wait: bool = True) -> AgentProcess:
        argv = [
            *self.prefix,
            sys.executable,
            "-m",
            "agent",
            f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        if wait:
            wait_until(self.healthy, timeout=20)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
        try:
            status, _ = self.http_get("127.0.0.1", self.port, "/healthz")
        except OSError:
            return False
        return status == 200

    def scrape(self) -> Scrape:
        status, body = self.http_get("127.0.0.1", self.port, "/metrics")
        assert status == 200, body
        return parse(body.decode())

    def health(self) -> dict[str, object]:
        _, body = self.http_get("127.0.0.1", self.port, "/healthz")
        return dict(json.loads(body))

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Send `sig` to the agent's PID and wait for it to exit; returns its exit code."""
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

    def __enter__(self) -> AgentProcess:
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


def run_agent_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `kipu-agent ARGS` to completion (for --check-config, --version, errors)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
