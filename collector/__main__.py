"""kipu-collector command line (flags follow Prometheus exporters).

kipu-collector --config.file=F [--web.listen-address=HOST:PORT] [--log.level=info]
kipu-collector --config.file=F --check-config
kipu-collector token issue SITE_ID --config.file=F
kipu-collector token revoke SITE_ID --config.file=F
kipu-collector token list --config.file=F
kipu-collector viewer hash                 (a password on stdin, its hash on stdout)
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import re
import sys
from collections.abc import Sequence

from collector.auth import TokenFileError, TokenStore
from collector.config import CollectorConfig, load_config
from collector.inventory import Inventory, load_inventory
from collector.tls import TlsError, ssl_context
from kipu.config import ConfigError
from kipu.config.checks import SITE_ID_PATTERN, listen_problem
from kipu.version import __version__

LOG_LEVELS = ("debug", "info", "warn", "error")


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config.file",
        dest="config_file",
        metavar="PATH",
        default=default,
        help="configuration file (YAML)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kipu-collector",
        description="Receive pushes from kipu agents, know which sites report, forward "
        "everything to the store.",
    )
    _common(p, suppress=False)
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        metavar="HOST:PORT",
        help="overrides `listen` of the configuration",
    )
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS)
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and the inventory, and exit",
    )
    p.add_argument("--version", action="version", version=f"kipu-collector {__version__}")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    token = commands.add_parser("token", help="issue, revoke or list site tokens")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("issue", "print a new token for SITE_ID on stdout (it is shown only this once)"),
        ("revoke", "revoke every token of SITE_ID"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("site_id", metavar="SITE_ID")
        _common(action, suppress=True)
    listing = actions.add_parser("list", help="sites holding tokens, with dates (never tokens)")
    _common(listing, suppress=True)
    viewer = commands.add_parser("viewer", help="hash a viewer's password for `viewers:`")
    viewer_actions = viewer.add_subparsers(dest="action", metavar="ACTION", required=True)
    viewer_actions.add_parser(
        "hash",
        help="read a password on stdin (not echoed on a terminal), print its hash",
        description="Read a password on stdin (asked twice, not echoed, on a terminal; "
        "the first line when piped) and print the password_hash to paste in viewers:.",
    )
    return p


def _load(path: str) -> tuple[CollectorConfig, Inventory]:
    config = load_config(path)
    return config, load_inventory(config.inventory)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "viewer":
        return _viewer_hash()
    if not args.config_file:
        parser().error("--config.file is required")
    logging.basicConfig(
        level=args.log_level.upper().replace("WARN", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config, inventory = _load(args.config_file)
    except ConfigError as err:
        print(f"kipu-collector: invalid configuration or inventory:\n{err}", file=sys.stderr)
        return 1
    if args.command == "token":
        return _token(args, config, inventory)
    if args.listen is not None and (why := listen_problem(args.listen)):
        print(f"kipu-collector: --web.listen-address: {why}", file=sys.stderr)
        return 1
    if args.check_config:
        if config.tls is not None:
            try:
                ssl_context(config.tls)
            except TlsError as err:
                print(f"kipu-collector: invalid configuration:\n{err}", file=sys.stderr)
                return 1
        for warning in inventory.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        sites, projects = len(inventory.sites), len(inventory.projects())
        print(
            f"{args.config_file}: OK, {sites} site{'s' * (sites != 1)} in {projects} "
            f"project{'s' * (projects != 1)} ({config.inventory})"
        )
        return 0

    from collector.app import Collector, StartError, serve  # noqa: PLC0415 - only to serve

    try:
        asyncio.run(serve(Collector(config, args.config_file), args.listen or config.listen))
    except (StartError, TlsError, OSError, ValueError) as err:
        print(f"kipu-collector: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _token(args: argparse.Namespace, config: CollectorConfig, inventory: Inventory) -> int:
    store = TokenStore(config.state_dir)
    try:
        if args.action == "list":
            for entry in store.entries():
                state = f"revoked {entry.revoked}" if entry.revoked else "active"
                print(f"{entry.site_id}\tissued {entry.created}\t{state}")
            return 0
        site_id = args.site_id
        if not re.fullmatch(SITE_ID_PATTERN, site_id):
            print(f"kipu-collector: {site_id!r} is not a site id", file=sys.stderr)
            return 1
        if args.action == "issue":
            if site_id not in inventory.sites:
                print(
                    f"kipu-collector: warning: {site_id} is not in the inventory: its pushes "
                    "are refused until it is",
                    file=sys.stderr,
                )
            print(store.issue(site_id))
            return 0
        count = store.revoke(site_id)
        print(f"{site_id}: {count} tokens revoked", file=sys.stderr)
        return 0 if count else 1
    except (TokenFileError, OSError) as err:
        print(f"kipu-collector: {err}", file=sys.stderr)
        return 2


def _viewer_hash() -> int:
    from collector.web.viewers import hash_password  # noqa: PLC0415 - this command only

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("kipu-collector: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        print("kipu-collector: an empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
