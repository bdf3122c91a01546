"""The compose files of deploy/compose, checked without Docker (no compose plugin here).

Both files are parsed as compose would read them (PyYAML, merge keys included) and held
to what the services' images expect: pinned tags, the ports the images listen on, mounts
whose host side exists in the repository, healthchecks against the service's own port,
dependencies that exist and wait for health. Every configuration mounted into a service
is then loaded by its real consumer: kipu's collector config and inventory loaders,
Debian's promtool for Prometheus, Debian's vmalert and vmagent (-dryRun) with the very
flags of the compose file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from collector.config import load_config
from collector.inventory import load_inventory
from tests.support.fixtures import need

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
FILES = {"noc": COMPOSE / "noc.yml", "scaleout": COMPOSE / "scaleout.yml"}
SERVICES = {
    "noc": {"collector", "prometheus", "alertmanager", "grafana"},
    "scaleout": {
        "collector-junin",
        "collector-huanuco",
        "vmstorage-1",
        "vmstorage-2",
        "vminsert",
        "vmselect",
        "vmagent",
        "vmalert",
        "alertmanager",
        "grafana",
    },
}
#: Known images and the port each listens on inside its container.
IMAGE_PORTS = {
    "kipu-collector": 9109,
    "prom/prometheus": 9090,
    "prom/alertmanager": 9093,
    "grafana/grafana": 3000,
    "victoriametrics/vmstorage": 8482,
    "victoriametrics/vminsert": 8480,
    "victoriametrics/vmselect": 8481,
    "victoriametrics/vmagent": 8429,
    "victoriametrics/vmalert": 8880,
}
#: Services only the NOC's own machines need: published on loopback, if at all.
LOOPBACK_ONLY = {"prometheus", "alertmanager", "vminsert", "vmselect"}
COLLECTOR_CONFIG = "/etc/kipu/collector.yaml"

Service = dict[str, Any]


def _compose(which: str) -> dict[str, Any]:
    document = yaml.safe_load(FILES[which].read_text())
    assert isinstance(document, dict)
    return document


def _services(which: str) -> dict[str, Service]:
    services = _compose(which)["services"]
    assert isinstance(services, dict)
    return services


def _all_services() -> list[tuple[str, str, Service]]:
    return [(which, name, s) for which in FILES for name, s in _services(which).items()]


def _parametrize(cases: list[tuple[str, str, Service]]) -> pytest.MarkDecorator:
    ids = [f"{which}-{name}" for which, name, _ in cases]
    return pytest.mark.parametrize(("which", "name", "service"), cases, ids=ids)


ALL = _parametrize(_all_services())


def _image(service: Service) -> tuple[str, str]:
    repository, _, tag = str(service["image"]).partition(":")
    return repository, tag


def _binds(service: Service) -> dict[str, Path]:
    """Bind mounts: container path -> host path (relative to the compose file)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            found[target] = (COMPOSE / source).resolve()
    return found


def _host_path(service: Service, container_path: str) -> Path:
    """The host file or folder behind a path inside the container."""
    path = PurePosixPath(container_path)
    for target, source in _binds(service).items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source.joinpath(*path.relative_to(target).parts)
    raise AssertionError(f"{container_path} is not mounted from the repository")


def _published(service: Service) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of every published port."""
    found = []
    for port in service.get("ports", []):
        parts = str(port).split(":")
        address = parts[0] if len(parts) == 3 else "0.0.0.0"
        found.append((address, int(parts[-2]), int(parts[-1])))
    return found


def test_each_file_has_its_services() -> None:
    for which, expected in SERVICES.items():
        assert set(_services(which)) == expected, which


@ALL
def test_images_are_known_and_pinned(which: str, name: str, service: Service) -> None:
    repository, tag = _image(service)
    assert repository in IMAGE_PORTS, f"{which}/{name}: unknown image {repository}"
    assert tag, f"{which}/{name}: no tag"
    assert tag not in ("latest", "local") or repository == "kipu-collector"
    if repository == "kipu-collector":
        build = service["build"]
        assert (COMPOSE / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).is_file()
        return
    assert re.fullmatch(r"v?\d+\.\d+\.\d+(-cluster)?", tag), f"{which}/{name}: {tag}"
    cluster_part = repository.split("/")[1] in ("vmstorage", "vminsert", "vmselect")
    assert tag.endswith("-cluster") == cluster_part, f"{which}/{name}: {tag}"


def test_victoriametrics_images_share_one_version() -> None:
    versions = {
        _image(s)[1].removesuffix("-cluster")
        for s in _services("scaleout").values()
        if _image(s)[0].startswith("victoriametrics/")
    }
    assert len(versions) == 1, versions


@ALL
def test_ports_reach_the_image_port(which: str, name: str, service: Service) -> None:
    container_port = IMAGE_PORTS[_image(service)[0]]
    for address, _, target in _published(service):
        assert target == container_port, f"{which}/{name}"
        if name in LOOPBACK_ONLY:
            assert address == "127.0.0.1", f"{which}/{name} must not be published to all"


def test_host_ports_do_not_collide() -> None:
    for which in FILES:
        ports = [p for s in _services(which).values() for _, p, _ in _published(s)]
        assert len(ports) == len(set(ports)), which


@ALL
def test_bind_mounts_exist_in_the_repository(which: str, name: str, service: Service) -> None:
    for target, source in _binds(service).items():
        assert source.exists(), f"{which}/{name}: {source} (mounted at {target}) is missing"
        assert ROOT in source.parents, f"{which}/{name}: {source} is outside the repository"
    for volume in service.get("volumes", []):
        assert str(volume).endswith(":ro") or not str(volume).startswith("."), (
            f"{which}/{name}: configuration mounts are read-only ({volume})"
        )


def test_named_volumes_are_declared_and_used() -> None:
    for which in FILES:
        declared = set(_compose(which)["volumes"])
        used = {
            str(v).split(":")[0]
            for s in _services(which).values()
            for v in s.get("volumes", [])
            if not str(v).startswith((".", "/"))
        }
        assert used == declared, which


@ALL
def test_healthcheck_probes_the_service_itself(which: str, name: str, service: Service) -> None:
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    urls = re.findall(r"http://[^\s'\"]+", " ".join(test[1:]))
    assert len(urls) == 1, test
    url = urlsplit(urls[0])
    assert url.hostname == "127.0.0.1"
    assert url.port == IMAGE_PORTS[_image(service)[0]], f"{which}/{name}"


def test_dependencies_exist_and_wait_for_health() -> None:
    for which in FILES:
        services = _services(which)
        graph = {name: set(s.get("depends_on", {})) for name, s in services.items()}
        for name, service in services.items():
            for dependency, condition in service.get("depends_on", {}).items():
                assert dependency in services, f"{which}/{name} -> {dependency}"
                assert condition == {"condition": "service_healthy"}
                assert "healthcheck" in services[dependency]
        # No cycles: removing services with no remaining dependencies empties the graph.
        while graph:
            free = {n for n, deps in graph.items() if not deps}
            assert free, f"{which}: dependency cycle among {sorted(graph)}"
            graph = {n: deps - free for n, deps in graph.items() if n not in free}


def _collectors() -> list[tuple[str, str, Service]]:
    return [
        (which, name, s) for which, name, s in _all_services() if _image(s)[0] == "kipu-collector"
    ]


@_parametrize(_collectors())
def test_collector_config_and_inventory_load(which: str, name: str, service: Service) -> None:
    assert service["command"] == [f"--config.file={COLLECTOR_CONFIG}"]
    config = load_config(_host_path(service, COLLECTOR_CONFIG))
    services = _services(which)

    inventory = load_inventory(_host_path(service, str(config.inventory)))
    assert inventory.sites
    assert inventory.warnings == ()
    # The state folder is a named volume, so tokens and the queue outlive the container.
    volumes = {str(v).split(":")[1]: str(v).split(":")[0] for v in service["volumes"]}
    assert volumes[str(config.state_dir)] in _compose(which)["volumes"]
    assert config.listen.endswith(f":{IMAGE_PORTS['kipu-collector']}")
    # It forwards to a service of this compose file, on that service's port.
    assert config.forward is not None
    url = urlsplit(config.forward.url)
    assert url.hostname in services
    assert url.port == IMAGE_PORTS[_image(services[url.hostname])[0]]


def test_collectors_of_the_scaleout_hold_disjoint_projects() -> None:
    projects = []
    for _, _, service in _collectors():
        if service in _services("scaleout").values():
            config = load_config(_host_path(service, COLLECTOR_CONFIG))
            projects.append(
                set(load_inventory(_host_path(service, str(config.inventory))).projects())
            )
    assert len(projects) == 2
    assert not projects[0] & projects[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    need(name, None if path else "not on PATH")
    assert path is not None
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _flag(command: list[str], flag: str) -> str:
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"{flag}=")]
    assert len(values) == 1, (flag, command)
    return values[0]


def test_prometheus_config_is_valid_with_the_mounted_rules(tmp_path: Path) -> None:
    prometheus = _services("noc")["prometheus"]
    config_path = _flag(prometheus["command"], "--config.file")
    config = yaml.safe_load(_host_path(prometheus, config_path).read_text())
    # The rule globs point into mounts; promtool reads the mounted files from the host.
    config["rule_files"] = [
        str(_host_path(prometheus, str(PurePosixPath(g).parent)) / PurePosixPath(g).name)
        for g in config["rule_files"]
    ]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))

    result = _run(_tool("promtool"), "check", "config", str(checked))

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rule files found", result.stdout), result.stdout
    assert "--web.enable-remote-write-receiver" in prometheus["command"]
    assert config["storage"]["tsdb"]["out_of_order_time_window"]
    # Every scrape target and Alertmanager is a service of the file, on its port.
    services = _services("noc")
    targets = [
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    targets += config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue  # Prometheus itself
        assert int(port) == IMAGE_PORTS[_image(services[host])[0]], target
    assert {j["job_name"] for j in config["scrape_configs"]} >= {"kipu-collector"}


@pytest.mark.parametrize("which", list(FILES))
def test_alertmanager_finds_its_templates_where_they_are_mounted(
    which: str, tmp_path: Path
) -> None:
    """amtool reads the config with its templates laid out as inside the container."""
    alertmanager = _services(which)["alertmanager"]
    config_path = PurePosixPath(_flag(alertmanager["command"], "--config.file"))
    config = yaml.safe_load(_host_path(alertmanager, str(config_path)).read_text())
    checked = tmp_path / config_path.name
    shutil.copy(_host_path(alertmanager, str(config_path)), checked)
    templates = 0
    for pattern in config.get("templates", []):
        inside = config_path.parent / pattern  # relative to the config file, as Alertmanager
        link = tmp_path / PurePosixPath(pattern).parent
        if not link.exists():
            link.symlink_to(_host_path(alertmanager, str(inside.parent)))
        templates += len(list(tmp_path.glob(pattern)))

    result = _run(_tool("amtool"), "check-config", str(checked))

    assert result.returncode == 0, result.stdout + result.stderr
    assert templates > 0, "no template file where the config looks for them"
    # amtool parses every template file the globs match; a broken one fails above.
    assert f" - {len(config['templates'])} templates" in result.stdout, result.stdout


def test_vmalert_accepts_the_flags_and_the_mounted_rules(tmp_path: Path) -> None:
    """Debian's vmalert (an older release than the image: a flag it lacks fails too)."""
    vmalert = _services("scaleout")["vmalert"]
    command = list(vmalert["command"])
    rule_glob = PurePosixPath(_flag(command, "-rule"))
    host_rules = _host_path(vmalert, str(rule_glob.parent))
    command = [
        f"-rule={host_rules / rule_glob.name}" if c.startswith("-rule=") else c for c in command
    ]

    result = _run(_tool("vmalert"), "-dryRun", *command)

    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(host_rules.glob(rule_glob.name)), "no rule file in the mounted folder"
    services = _services("scaleout")
    assert _flag(command, "-datasource.url") == "http://vmselect:8481/select/0/prometheus"
    assert _flag(command, "-remoteWrite.url") == "http://vminsert:8480/insert/0/prometheus"
    notifier = urlsplit(_flag(command, "-notifier.url"))
    assert notifier.hostname in services


def test_vmalert_dry_run_rejects_a_bad_rule(tmp_path: Path) -> None:
    """The check above can fail."""
    (tmp_path / "bad.yml").write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: rate(x[5m]\n"
    )
    result = _run(_tool("vmalert"), "-dryRun", f"-rule={tmp_path}/*.yml")
    assert result.returncode != 0


def test_vmagent_scrapes_every_collector(tmp_path: Path) -> None:
    vmagent = _services("scaleout")["vmagent"]
    command = list(vmagent["command"])
    scrape = _host_path(vmagent, _flag(command, "-promscrape.config"))
    command = [
        f"-promscrape.config={scrape}"
        if c.startswith("-promscrape.config=")
        else f"-remoteWrite.tmpDataPath={tmp_path}"
        if c.startswith("-remoteWrite.tmpDataPath=")
        else c
        for c in command
    ]

    result = _run(_tool("vmagent"), "-dryRun", *command)

    assert result.returncode == 0, result.stderr[-3000:]
    services = _services("scaleout")
    config = yaml.safe_load(scrape.read_text())
    jobs = {
        j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
        for j in config["scrape_configs"]
    }
    collectors = {n for _, n, s in _collectors() if s in services.values()}
    assert {t.split(":")[0] for t in jobs["kipu-collector"]} == collectors
    for targets in jobs.values():
        for target in targets:
            host, port = target.rsplit(":", 1)
            assert int(port) == IMAGE_PORTS[_image(services[host])[0]], target
    write = urlsplit(_flag(command, "-remoteWrite.url"))
    assert (write.hostname, write.path) == ("vminsert", "/insert/0/prometheus/api/v1/write")


@pytest.mark.parametrize(("which", "store"), [("noc", "prometheus"), ("scaleout", "vmselect")])
def test_grafana_reads_the_store_and_the_dashboards(which: str, store: str) -> None:
    grafana = _services(which)["grafana"]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning/datasources")
    datasources = [
        d
        for f in sorted(provisioning.glob("*.yaml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert len(datasources) == 1
    (source,) = datasources
    assert source["type"] == "prometheus"  # the dashboards' datasource variable's type
    url = urlsplit(source["url"])
    assert url.hostname == store
    assert url.port == IMAGE_PORTS[_image(_services(which)[store])[0]]
    if store == "vmselect":
        assert url.path == "/select/0/prometheus"
    dashboards = _host_path(grafana, "/var/lib/grafana/dashboards/kipu")
    assert sorted(dashboards.glob("*.json"))
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path(grafana, home).is_file()
    # The shared provisioning's file provider reads the folder mounted here.
    providers = _host_path(grafana, "/etc/grafana/provisioning/dashboards")
    paths = {
        p["options"]["path"]
        for f in sorted(providers.glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text()).get("providers", [])
    }
    assert paths
    for path in paths:
        assert _host_path(grafana, path) == dashboards


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (COMPOSE / "Dockerfile").read_text()
    copied = {
        source
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    for source in copied:
        assert (ROOT / source).exists(), source
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    top_level = {p.split(".")[0] for p in pyproject["tool"]["setuptools"]["packages"]}
    assert top_level <= copied
    assert 'pip install --no-cache-dir ".[collector]"' in dockerfile
    assert dockerfile.splitlines()[-2] == 'ENTRYPOINT ["kipu-collector"]'
    # The build context is the repository root: the ignore file lets exactly those in.
    ignore = (COMPOSE / "Dockerfile.dockerignore").read_text().split()
    assert "*" in ignore
    assert {f"!{c}".rstrip("/") for c in copied} <= {line.rstrip("/") for line in ignore}
