"""The collector's configuration: the contract shape loads, every problem is named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.config import Sla, SlaOverride, SlaRule, load_config
from kipu.config import ConfigError

CONTRACT = textwrap.dedent(
    """\
    listen: 0.0.0.0:9109
    state_dir: /var/lib/kipu-collector     # token hashes, last-push times, forward queue
    inventory: /etc/kipu/sites.yaml        # .yaml or .csv
    silent_after: 90s
    limits: {max_body: 8MiB, max_series_per_site: 5000, max_samples_per_second_per_site: 2000}
    forward:                               # optional
      url: http://127.0.0.1:9090/api/v1/write
      max_queue: 4GiB
    tls: {cert_file: /etc/kipu/noc.crt, key_file: /etc/kipu/noc.key}   # optional; re-read on SIGHUP
    viewers:                               # optional; without it the page is open
      - {name: ana, password_hash: "scrypt$16384$8$1$c2FsdA==$aGFzaA==", projects: [junin]}
    timezone: America/Lima                 # months of the SLA reports
    sla:
      default: {target_percent: 99.0, exclude_power_cuts: true, unknown_as: down}
      projects: {junin: {target_percent: 98.5}}
    maintenance: /etc/kipu/maintenance.yaml
    """
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return path


def test_the_contract_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONTRACT))
    assert config.listen == "0.0.0.0:9109"
    assert config.inventory == Path("/etc/kipu/sites.yaml")
    assert config.silent_after == 90.0
    assert config.limits.max_body == 8 * 1024**2
    assert config.limits.max_samples_per_second_per_site == 2000.0
    assert config.forward is not None
    assert config.forward.max_queue == 4 * 1024**3
    assert config.tls is not None
    assert config.viewers is not None
    assert config.viewers[0].projects == ("junin",)
    assert config.sla.rule("junin") == SlaRule(98.5, True, "down")
    assert config.sla.rule("huanuco") == SlaRule(99.0, True, "down")


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    text = "inventory: sites.csv\nstate_dir: state\nmaintenance: maint.yaml\n"
    config = load_config(write(tmp_path, text))
    assert config.inventory == tmp_path / "sites.csv"
    assert config.state_dir == tmp_path / "state"
    assert config.maintenance == tmp_path / "maint.yaml"


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "inventory: sites.yaml\n"))
    assert config.forward is None
    assert config.viewers is None
    assert config.timezone == "America/Lima"
    assert config.limits.max_series_per_site == 5000


def test_every_problem_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        textwrap.dedent(
            """\
            inventory: sites.xlsx
            listen: somewhere
            silent_after: a while
            timezone: Lima
            viewers: []
            sla:
              projects:
                Junin: {target_percent: 98.5}
                huanuco: {target_percent: 120}
            forward: {url: ftp://store}
            colour: red
            """
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    for want in (
        f"{path}:2: listen: 'somewhere' is not HOST:PORT",
        f"{path}:3: silent_after: 'a while' is not a duration",
        f"{path}:4: timezone: 'Lima' is not a time zone",
        f"{path}:8: sla.projects.Junin: 'Junin' does not match",
        f"{path}:9: sla.projects.huanuco.target_percent: 120 is above the maximum 100",
        f"{path}:10: forward.url: 'ftp://store' is not an http:// or https:// URL",
        f"{path}:11: colour: unknown key",
    ):
        assert want in text, (want, text)


def test_rules_across_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "inventory: sites.xlsx\nviewers: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{path}:1: inventory: " in text
    assert f"{path}:2: viewers: an empty list lets nobody in" in text


def test_a_viewer_needs_a_real_hash(tmp_path: Path) -> None:
    path = write(tmp_path, "inventory: s.yaml\nviewers: [{name: ana, password_hash: secret}]\n")
    with pytest.raises(ConfigError, match="kipu-collector viewer hash"):
        load_config(path)


def test_project_overrides_change_only_what_they_name() -> None:
    sla = Sla(SlaRule(99.0, True, "down"), {"amazonas": SlaOverride(unknown_as="excluded")})
    assert sla.rule("amazonas") == SlaRule(99.0, True, "excluded")
