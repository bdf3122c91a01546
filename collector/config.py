"""The collector's configuration: the contract of DESIGN.md §4 as frozen, validated models.

Relative paths in the file (inventory, state_dir, maintenance, TLS files, forward token
and CA) are relative to the configuration file's folder.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kipu.config import Duration, Size, Validated, load_file, setting
from kipu.config.checks import NAME_PATTERN, SITE_ID_PATTERN, listen_problem, url_problem

if TYPE_CHECKING:
    from collector.inventory import Site

PROJECT_PATTERN = r"[a-z0-9][a-z0-9_-]*"
PASSWORD_HASH = re.compile(r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$")


def _timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{name!r} is not a time zone (e.g. America/Lima)"
    return None


def _instant_problem(text: str) -> str | None:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return f"{text!r} is not a time (write 2026-10-10T02:00:00-05:00)"
    if moment.tzinfo is None:
        return f"{text!r} has no UTC offset (write e.g. 2026-10-10T02:00:00-05:00)"
    return None


def _password_hash_problem(text: str) -> str | None:
    if PASSWORD_HASH.match(text):
        return None
    return "not a password hash: make one with `kipu-collector viewer hash`"


@dataclass(frozen=True)
class Limits:
    """What one site may send."""

    max_body: Size = setting(
        8 * 1024**2, doc="Largest request body (compressed); larger is 413.", minimum=1024
    )
    max_series_per_site: int = setting(
        5000, doc="Distinct series a site may send within 15 minutes; more is 429.", minimum=1
    )
    max_samples_per_second_per_site: float = setting(
        2000.0,
        doc="Pace of a site's backlog (samples older than live_window); faster is 429.",
        exclusive_minimum=0,
    )
    live_window: Duration = setting(
        300.0,
        doc="Samples newer than this are live: never paced, only the series limit applies.",
        minimum=1.0,
    )


@dataclass(frozen=True)
class Forward:
    """Where accepted samples go: a remote-write store (Prometheus, VictoriaMetrics...)."""

    url: str = setting(doc="Remote write endpoint of the store.", check=url_problem)
    max_queue: Size = setting(
        4 * 1024**3, doc="Bound of the queue on disk; pushes get 503 beyond it.", minimum=1024**2
    )
    timeout: Duration = setting(30.0, doc="Per request to the store.", minimum=0.01)
    token_file: Path | None = setting(None, doc="Bearer token for the store, if it needs one.")
    ca_file: Path | None = setting(None, doc="CA bundle for a store with a private CA.")


@dataclass(frozen=True)
class Tls:
    """HTTPS without a proxy; both files are read again on SIGHUP."""

    cert_file: Path = setting(doc="Certificate chain (PEM).")
    key_file: Path = setting(doc="Private key (PEM).")


@dataclass(frozen=True)
class Viewer:
    """An account of the NOC page and the read API, limited to some projects."""

    name: str = setting(doc="Login name.", pattern=NAME_PATTERN)
    password_hash: str = setting(
        doc="From `kipu-collector viewer hash`.", check=_password_hash_problem
    )
    projects: tuple[str, ...] = setting(
        default_factory=lambda: ("*",), doc="Projects this viewer sees; * for all."
    )


@dataclass(frozen=True)
class SlaRule:
    """How a month's availability is judged."""

    target_percent: float = setting(99.0, doc="Availability to meet.", minimum=0, maximum=100)
    exclude_power_cuts: bool = setting(
        True, doc="Time the site was off (a power cut) is excluded from the period."
    )
    unknown_as: Literal["down", "excluded"] = setting(
        "down", doc="Time with no accounting at all counts as down, or is excluded."
    )


@dataclass(frozen=True)
class SlaOverride:
    """A project's departures from the default rule."""

    target_percent: float | None = setting(
        None, doc="Availability to meet.", minimum=0, maximum=100
    )
    exclude_power_cuts: bool | None = setting(None, doc="Exclude power cuts.")
    unknown_as: Literal["down", "excluded"] | None = setting(None, doc="down or excluded.")


@dataclass(frozen=True)
class Sla:
    """Monthly service-level rules."""

    default: SlaRule = setting(default_factory=SlaRule, doc="The rule of every project.")
    projects: dict[str, SlaOverride] = setting(
        default_factory=dict, doc="Overrides per project.", key_pattern=PROJECT_PATTERN
    )

    def rule(self, project: str) -> SlaRule:
        """The default rule with the project's overrides applied."""
        override = self.projects.get(project)
        if override is None:
            return self.default
        changes = {k: v for k, v in dataclasses.asdict(override).items() if v is not None}
        return dataclasses.replace(self.default, **changes)


SELECTORS = ("site_id", "project", "region", "upstream_node")


@dataclass(frozen=True)
class MaintenanceWindow(Validated):
    """A time the SLA does not count against the operator, for some sites."""

    start: str = setting(
        doc="First instant, with its UTC offset (2026-10-10T02:00:00-05:00).",
        check=_instant_problem,
    )
    end: str = setting(
        doc="Instant the window closes, with its UTC offset.", check=_instant_problem
    )
    reason: str = setting("", doc="Why (shown in the reports).")
    site_id: str | None = setting(None, doc="One site.", pattern=SITE_ID_PATTERN)
    project: str | None = setting(None, doc="Every site of a project.", pattern=PROJECT_PATTERN)
    region: str | None = setting(None, doc="Every site of a region (department name).")
    upstream_node: str | None = setting(None, doc="Every site hanging from a node.")

    @property
    def start_seconds(self) -> float:
        return datetime.datetime.fromisoformat(self.start).timestamp()

    @property
    def end_seconds(self) -> float:
        return datetime.datetime.fromisoformat(self.end).timestamp()

    def selects(self, site: Site) -> bool:
        """Whether the window applies to `site`."""
        return any(
            getattr(self, key) is not None and getattr(self, key) == getattr(site, key)
            for key in SELECTORS
        )

    def problems(self) -> Iterator[tuple[str, str]]:
        chosen = [key for key in SELECTORS if getattr(self, key) is not None]
        if len(chosen) != 1:
            yield "site_id", f"select the sites with exactly one of {', '.join(SELECTORS)}"
        valid = _instant_problem(self.start) is None and _instant_problem(self.end) is None
        if valid and self.end_seconds <= self.start_seconds:
            yield "end", "the window ends before it starts"


@dataclass(frozen=True)
class Maintenance(Validated):
    """The maintenance file: `windows:` list."""

    windows: tuple[MaintenanceWindow, ...] = setting((), doc="Maintenance windows.")


def load_maintenance(path: Path | None) -> Maintenance:
    """The windows of a maintenance file (none without one); ConfigError lists every
    problem as FILE:LINE: key: message."""
    if path is None:
        return Maintenance()
    return load_file(Maintenance, path)


@dataclass(frozen=True)
class CollectorConfig(Validated):
    """kipu-collector configuration."""

    inventory: Path = setting(doc="The sites: a .yaml or .csv file.")
    listen: str = setting(
        "0.0.0.0:9109", doc="HOST:PORT for pushes, the NOC page and the API.", check=listen_problem
    )
    state_dir: Path = setting(
        Path("/var/lib/kipu-collector"), doc="Token hashes, last-push times, forward queue."
    )
    silent_after: Duration = setting(
        90.0, doc="A site that has not pushed for this long is silent.", minimum=1.0
    )
    limits: Limits = setting(default_factory=Limits, doc="What one site may send.")
    forward: Forward | None = setting(None, doc="Forward accepted samples to a store.")
    tls: Tls | None = setting(None, doc="Serve HTTPS.")
    viewers: tuple[Viewer, ...] | None = setting(
        None, doc="Accounts of the page and API; without it they are open.", unique="name"
    )
    timezone: str = setting(
        "America/Lima", doc="Time zone of the reports' months.", check=_timezone_problem
    )
    sla: Sla = setting(default_factory=Sla, doc="Monthly service-level rules.")
    maintenance: Path | None = setting(None, doc="Maintenance windows (YAML).")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.inventory.suffix.lower() not in (".yaml", ".yml", ".csv"):
            yield "inventory", f"{self.inventory} is neither .yaml, .yml nor .csv"
        if self.viewers is not None and not self.viewers:
            yield "viewers", "an empty list lets nobody in: list viewers, or remove the key"


def resolve(config: CollectorConfig, base: Path) -> CollectorConfig:
    """The configuration with its relative paths made relative to `base`."""

    def at(path: Path | None) -> Path | None:
        return None if path is None or path.is_absolute() else base / path

    changes: dict[str, object] = {
        "inventory": at(config.inventory) or config.inventory,
        "state_dir": at(config.state_dir) or config.state_dir,
    }
    if config.maintenance is not None:
        changes["maintenance"] = at(config.maintenance) or config.maintenance
    if config.tls is not None:
        changes["tls"] = Tls(
            at(config.tls.cert_file) or config.tls.cert_file,
            at(config.tls.key_file) or config.tls.key_file,
        )
    if config.forward is not None:
        changes["forward"] = dataclasses.replace(
            config.forward,
            token_file=at(config.forward.token_file) or config.forward.token_file,
            ca_file=at(config.forward.ca_file) or config.forward.ca_file,
        )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def load_config(path: str | Path) -> CollectorConfig:
    """Read and validate a collector configuration; ConfigError lists every problem."""
    config = load_file(CollectorConfig, path)
    return resolve(config, Path(path).resolve().parent)
