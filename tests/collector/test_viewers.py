"""Viewers: scrypt hashes, HTTP Basic, the cache of verified credentials, the
`viewer hash` command, and scoped viewers who never see another project's sites in the
page, the API or the rollups."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import fcntl
import json
import os
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from collector.config import PASSWORD_HASH, Viewer
from collector.web.routes import WEB
from collector.web.viewers import (
    REALM,
    Gate,
    PasswordHashError,
    basic_credentials,
    hash_password,
    verify_password,
)
from tests.collector.test_web_fleet import (
    WebNoc,
    basic,
    fleet,
    parse_page,
    start_web_noc,
)
from tests.collector_process import ROOT, run_collector_cli

FAST = 1024  # scrypt N for the tests' accounts: the format is the same, the cost lower


# -- hashes


def test_a_hash_has_the_configuration_s_format_and_checks_the_password() -> None:
    encoded = hash_password("contraseña segura")
    assert PASSWORD_HASH.match(encoded)
    assert encoded.startswith("scrypt$32768$8$1$")
    assert verify_password("contraseña segura", encoded)
    assert not verify_password("contraseña segura ", encoded)
    assert not verify_password("", encoded)
    assert hash_password("x", n=FAST) != hash_password("x", n=FAST)  # salted


@pytest.mark.parametrize(
    "encoded",
    [
        "scrypt$1000$8$1$c2FsdA==$aGFzaA==",  # N not a power of two
        "scrypt$1073741824$8$1$c2FsdA==$aGFzaA==",  # a terabyte of memory
        "scrypt$1024$0$1$c2FsdA==$aGFzaA==",
        "scrypt$1024$8$1$c2FsdA=$aGFzaA==",  # bad base64
        "bcrypt$1024$8$1$c2FsdA==$aGFzaA==",
    ],
)
def test_a_hash_that_cannot_be_checked_is_an_error(encoded: str) -> None:
    with pytest.raises(PasswordHashError):
        verify_password("x", encoded)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Basic " + base64.b64encode(b"ana:s3cret").decode(), ("ana", "s3cret")),
        ("basic " + base64.b64encode(b"ana:a:b:c").decode(), ("ana", "a:b:c")),
        ("Basic " + base64.b64encode("ana:ñandú".encode()).decode(), ("ana", "ñandú")),
        ("Basic " + base64.b64encode("ana:ñ".encode("latin-1")).decode(), ("ana", "ñ")),
        ("Basic " + base64.b64encode(b"ana").decode(), None),
        ("Basic " + base64.b64encode(b":pw").decode(), None),
        ("Basic not*base64", None),
        ("Bearer kipu_abc", None),
        ("", None),
        (None, None),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


# -- the gate and its cache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authorization(name: str, password: str) -> str:
    return basic(name, password)["Authorization"]


async def test_verified_credentials_are_kept_for_a_while_and_no_longer() -> None:
    clock = FakeClock()
    gate = Gate(ttl=60, clock=clock)
    ana = Viewer("ana", await asyncio.to_thread(hash_password, "pw-ana", n=FAST), ("junin",))
    viewers = (ana,)
    assert await gate.viewer(authorization("ana", "pw-ana"), viewers) == ana
    for _ in range(5):
        assert await gate.viewer(authorization("ana", "pw-ana"), viewers) == ana
    assert gate.verifications == 1
    assert await gate.viewer(authorization("ana", "wrong"), viewers) is None
    assert gate.verifications == 2  # a wrong password is checked every time
    clock.now += 61
    assert await gate.viewer(authorization("ana", "pw-ana"), viewers) == ana
    assert gate.verifications == 3


async def test_a_new_password_or_scope_takes_effect_at_once() -> None:
    gate = Gate(ttl=600)
    old = await asyncio.to_thread(hash_password, "old", n=FAST)
    ana = Viewer("ana", old, ("junin",))
    assert await gate.viewer(authorization("ana", "old"), (ana,)) == ana
    moved = dataclasses.replace(ana, projects=("cusco",))
    assert await gate.viewer(authorization("ana", "old"), (moved,)) == moved
    new = Viewer("ana", await asyncio.to_thread(hash_password, "new", n=FAST), ("junin",))
    assert await gate.viewer(authorization("ana", "old"), (new,)) is None
    assert await gate.viewer(authorization("ana", "new"), (new,)) == new
    assert await gate.viewer(authorization("ana", "new"), ()) is None  # removed


async def test_an_unknown_name_costs_a_check_like_a_wrong_password() -> None:
    gate = Gate()
    ana = Viewer("ana", await asyncio.to_thread(hash_password, "pw", n=FAST), ("*",))
    started = time.perf_counter()
    assert await gate.viewer(authorization("nobody", "pw"), (ana,)) is None
    assert gate.verifications == 1
    # The decoy has the default cost: an unknown name is not answered faster.
    assert time.perf_counter() - started > 0.01


# -- the command


def test_viewer_hash_from_a_pipe_prints_a_hash_of_the_first_line() -> None:
    result = run_collector_cli("viewer", "hash", stdin="contraseña\nignored\n")
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert result.stdout == encoded + "\n"
    assert PASSWORD_HASH.match(encoded)
    assert verify_password("contraseña", encoded)
    empty = run_collector_cli("viewer", "hash", stdin="")
    assert empty.returncode == 1
    assert empty.stdout == ""


def _read_until(fd: int, wanted: bytes, deadline: float) -> bytes:
    seen = b""
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} on the terminal; saw {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            seen += os.read(fd, 1024)
    return seen


def test_viewer_hash_on_a_terminal_asks_twice_without_echo() -> None:
    controller, terminal = os.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "viewer", "hash"],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=take_terminal,  # noqa: PLW1509 - the child needs the terminal as its own
    )
    try:
        os.close(terminal)
        deadline = time.monotonic() + 30
        shown = _read_until(controller, b"Password: ", deadline)
        os.write(controller, b"pw-on-a-tty\n")
        shown += _read_until(controller, b"Again: ", deadline)
        os.write(controller, b"pw-on-a-tty\n")
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        os.close(controller)
    assert process.returncode == 0, err
    assert b"pw-on-a-tty" not in shown  # not echoed
    assert verify_password("pw-on-a-tty", out.decode().strip())


# -- scoped viewers on the page, the API and the rollups


PASSWORDS = {"ana": "ana-junin", "jefe": "jefe-todo", "luis": "luis-dos"}
PROJECTS = {"ana": ["junin"], "jefe": ["*"], "luis": ["huanuco", "cusco"]}


async def viewers_yaml(projects: dict[str, list[str]] = PROJECTS) -> str:
    lines = ["viewers:"]
    for name, password in PASSWORDS.items():
        encoded = await asyncio.to_thread(hash_password, password, n=FAST)
        listed = ", ".join(f'"{p}"' for p in projects[name])
        lines.append(f'  - {{name: {name}, password_hash: "{encoded}", projects: [{listed}]}}')
    return "\n".join(lines) + "\n"


@pytest.fixture
async def noc(aiohttp_client: AiohttpClient, tmp_path: Path) -> WebNoc:
    sites = await asyncio.to_thread(fleet, 60)
    return await start_web_noc(aiohttp_client, tmp_path, sites, await viewers_yaml())


def as_viewer(name: str, password: str | None = None) -> dict[str, str]:
    return basic(name, PASSWORDS[name] if password is None else password)


READ_PATHS = (
    "/",
    "/?state=silent",
    "/sites/jun-0001",
    "/api/v1/sites",
    "/api/v1/sites/jun-0001",
    "/api/v1/rollups",
)


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        as_viewer("ana", "wrong"),
        as_viewer("ana", ""),
        {"Authorization": authorization("nadie", "ana-junin")},
        {"Authorization": "Basic ###"},
        {"Authorization": "Bearer kipu_x"},
    ],
    ids=["none", "wrong", "empty", "unknown", "malformed", "bearer"],
)
async def test_without_valid_credentials_every_read_is_401(
    noc: WebNoc, path: str, headers: dict[str, str]
) -> None:
    status, text, answered = await noc.get(path, headers)
    assert status == 401
    assert answered["WWW-Authenticate"] == REALM == 'Basic realm="kipu"'
    assert "jun-0001" not in text
    assert "Junín" not in text


async def test_metrics_healthz_and_pushes_stay_as_they_were(noc: WebNoc) -> None:
    assert (await noc.get("/healthz"))[0] == 200
    assert (await noc.get("/metrics"))[0] == 200
    response = await noc.client.post("/api/v1/write", data=b"", headers=as_viewer("jefe"))
    assert response.status == 401  # a viewer cannot write: only site tokens can


def other_projects_appear(text: str, viewer_projects: set[str], noc: WebNoc) -> list[str]:
    """Site ids, names and project names of projects the viewer may not see."""
    found = []
    for site in noc.sites:
        if site.project in viewer_projects:
            continue
        for shown in (site.site_id, site.project):
            if re.search(rf"(?<![\w-]){re.escape(shown)}(?![\w-])", text):
                found.append(shown)
    return found


@pytest.mark.parametrize("name", ["ana", "luis"])
async def test_a_scoped_viewer_sees_only_their_projects(noc: WebNoc, name: str) -> None:
    allowed = set(PROJECTS[name])
    noc.headers = as_viewer(name)
    mine = {s.site_id for s in noc.sites if s.project in allowed}
    for path in ("/", "/?lang=en", "/?q=0", "/?type=school", "/?state=never_seen"):
        status, text, _ = await noc.get(path)
        assert status == 200
        page = parse_page(text)
        assert set(page.site_ids()) <= mine
        assert {dot.site_id for dot in page.dots} <= mine
        assert other_projects_appear(text, allowed, noc) == []
    everything = parse_page((await noc.get("/"))[1])
    assert set(everything.site_ids()) == mine
    assert f"{name}" in everything.text  # "Sesión de ana"
    status, text, _ = await noc.get("/api/v1/sites")
    assert status == 200
    assert other_projects_appear(text, allowed, noc) == []
    listed = {site["site_id"] for site in json.loads(text)["sites"]}
    assert listed == mine
    status, text, _ = await noc.get("/api/v1/rollups")
    assert status == 200
    assert {row["project"] for row in json.loads(text)["rollups"]} == allowed
    assert other_projects_appear(text, allowed, noc) == []
    for site in noc.sites:
        if site.project not in allowed:
            assert (await noc.get(f"/sites/{site.site_id}"))[0] == 404
            assert (await noc.get(f"/api/v1/sites/{site.site_id}"))[0] == 404
    known = ", ".join(sorted(allowed))
    for project in {s.project for s in noc.sites} - allowed:
        # Naming another project is naming an unknown one: it is not said to exist.
        status, text, _ = await noc.get(f"/api/v1/sites?project={project}")
        assert status == 400
        assert json.loads(text) == {"error": f"project: unknown value {project!r}; known: {known}"}
        status, text, _ = await noc.get(f"/?project={project}")
        assert status == 400
        assert f"Valores conocidos: {known}." in parse_page(text).text
        # The name typed comes back in the message and links; nothing else does.
        assert set(other_projects_appear(text, allowed, noc)) == {project}


async def test_a_viewer_of_every_project_sees_every_site(noc: WebNoc) -> None:
    noc.headers = as_viewer("jefe")
    page = parse_page((await noc.get("/"))[1])
    assert sorted(page.site_ids()) == sorted(s.site_id for s in noc.sites)
    assert (await noc.get("/sites/hco-0001"))[0] == 200


async def test_one_check_per_viewer_then_the_cache(noc: WebNoc) -> None:
    gate = noc.client.app[WEB].gate
    before = gate.verifications
    for _ in range(5):
        for name in ("ana", "luis"):
            assert (await noc.get("/api/v1/rollups", as_viewer(name)))[0] == 200
    assert gate.verifications - before == 2


async def test_a_reload_changes_scopes_and_passwords(noc: WebNoc, tmp_path: Path) -> None:
    noc.headers = as_viewer("ana")
    assert (await noc.get("/sites/cus-0001"))[0] == 404
    config = tmp_path / "collector.yaml"
    text = await asyncio.to_thread(config.read_text)
    moved = {**PROJECTS, "ana": ["cusco"]}
    text = text[: text.index("viewers:")] + await viewers_yaml(moved)
    await asyncio.to_thread(config.write_text, text)
    assert await noc.collector.reload() == []
    assert (await noc.get("/sites/cus-0001"))[0] == 200
    assert (await noc.get("/sites/jun-0001"))[0] == 404
    # The hashes were made anew (new salts): the cached pair no longer matches, the
    # password is checked again and still good.
    assert (await noc.get("/api/v1/rollups"))[0] == 200
    assert (await noc.get("/api/v1/rollups", as_viewer("ana", "ana-old")))[0] == 401
