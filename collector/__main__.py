"""kipu-collector command line (flags follow Prometheus exporters).

kipu-collector --config.file=F [--web.listen-address=HOST:PORT ...] [--log.level=info]
kipu-collector --config.file=F --check-config
kipu-collector token issue SITE_ID --config.file=F
kipu-collector token revoke SITE_ID --config.file=F
kipu-collector token list --config.file=F
kipu-collector viewer hash                 (a password on stdin, its hash on stdout)
kipu-collector report sla --config.file=F --month=YYYY-MM [--project=P]
               [--format=csv|html|pdf] [--lang=es|en] [--output=PATH]
kipu-collector report panel --config.file=F --from=YYYY-MM --to=YYYY-MM [--output=PATH]
kipu-collector inventory convert --from=minedu|renipress --project=P FILE.csv > sites.csv
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
from collector.config import CollectorConfig, Maintenance, load_config, load_maintenance
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
        action="append",
        metavar="HOST:PORT",
        help="overrides `listen` of the configuration (repeat it to listen on several)",
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
    _inventory_parser(commands)
    report = commands.add_parser(
        "report", help="monthly SLA report or research panel, from the ledger in state_dir"
    )
    kinds = report.add_subparsers(dest="action", metavar="REPORT", required=True)
    sla = kinds.add_parser(
        "sla",
        help="each institution's availability in a month",
        description="Each institution's availability in a calendar month (the "
        "configuration's timezone), with the SLA rules and maintenance windows of the "
        "configuration. Reads the ledger; a running collector saves it every few seconds.",
    )
    _common(sla, suppress=True)
    sla.add_argument("--month", required=True, metavar="YYYY-MM", help="the month, e.g. 2026-10")
    sla.add_argument("--project", metavar="P", help="one project (all by default)")
    sla.add_argument("--format", choices=("csv", "html", "pdf"), default="csv")
    sla.add_argument("--lang", choices=("es", "en"), default="es", help="of HTML and PDF")
    sla.add_argument("--output", metavar="PATH", help="file to write (stdout by default)")
    panel = kinds.add_parser(
        "panel",
        help="department x month x institution type panel (CSV)",
        description="One row per department, month and institution type (docs/panel.md).",
    )
    _common(panel, suppress=True)
    panel.add_argument("--from", dest="first", required=True, metavar="YYYY-MM")
    panel.add_argument("--to", dest="last", required=True, metavar="YYYY-MM")
    panel.add_argument("--output", metavar="PATH", help="file to write (stdout by default)")
    return p


def _load(path: str) -> tuple[CollectorConfig, Inventory]:
    config = load_config(path)
    return config, load_inventory(config.inventory)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "viewer":
        return _viewer_hash()
    if args.command == "inventory":
        return _inventory_convert(args)
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
    try:
        maintenance = load_maintenance(config.maintenance)
    except ConfigError as err:
        print(f"kipu-collector: invalid maintenance windows:\n{err}", file=sys.stderr)
        return 1
    if args.command == "report":
        return _report(args, config, inventory, maintenance)
    for listen in args.listen or []:
        if why := listen_problem(listen):
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


def _report(
    args: argparse.Namespace,
    config: CollectorConfig,
    inventory: Inventory,
    maintenance: Maintenance,
) -> int:
    from collector import reports  # noqa: PLC0415 - this command only
    from collector.reports import panel, render, sla  # noqa: PLC0415

    try:
        if args.action == "sla":
            report = reports.sla_report(
                config, inventory, maintenance, args.month, project=args.project
            )
            if args.format == "csv":
                body = sla.to_csv(report.rows).encode()
            else:
                document = render.html(report, args.lang)
                body = document.encode() if args.format == "html" else render.pdf(document)
        else:
            cells = reports.panel_report(config, inventory, maintenance, args.first, args.last)
            body = panel.to_csv(cells).encode()
    except reports.ReportError as err:
        print(f"kipu-collector: {err}", file=sys.stderr)
        return 1
    if args.output:
        try:
            with open(args.output, "wb") as out:
                out.write(body)
        except OSError as err:
            print(f"kipu-collector: {err}", file=sys.stderr)
            return 2
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    return 0


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


def _inventory_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from collector.importers import ACCESS_TECHS, SOURCES  # noqa: PLC0415 - small, pure

    inventory = commands.add_parser("inventory", help="build an inventory from a ministry's list")
    actions = inventory.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = (
        "Convert a MINEDU padrón or a RENIPRESS export (CSV) into inventory rows, written "
        "as CSV on stdout; rows that cannot be converted are listed on stderr with their "
        "line (exit status 1 when any was left out)."
    )
    convert = actions.add_parser(
        "convert", help="MINEDU padrón or RENIPRESS CSV -> inventory CSV", description=text
    )
    convert.add_argument("--from", dest="source", required=True, choices=SOURCES)
    convert.add_argument("--project", required=True, help="the project of every site")
    convert.add_argument(
        "--upstream-node",
        metavar="NODE",
        help="for rows without an upstream_node column",
    )
    convert.add_argument(
        "--access-tech", choices=ACCESS_TECHS, help="for rows without an access_tech column"
    )
    convert.add_argument(
        "--site-prefix", metavar="PREFIX", help="site_id is PREFIX-CODE (default: the project)"
    )
    convert.add_argument(
        "--include-inactive", action="store_true", help="keep rows the export marks inactive"
    )
    convert.add_argument("file", metavar="FILE.csv", help="the export (UTF-8 or Windows-1252)")


def _inventory_convert(args: argparse.Namespace) -> int:
    from collector.importers import (  # noqa: PLC0415 - this command only
        ConvertOptions,
        convert,
        decode_export,
        write_inventory_csv,
    )

    options = ConvertOptions(
        project=args.project,
        upstream_node=args.upstream_node,
        access_tech=args.access_tech,
        site_prefix=args.site_prefix,
        include_inactive=args.include_inactive,
    )
    if wrong := list(options.problems()):
        for why in wrong:
            print(f"kipu-collector: {why}", file=sys.stderr)
        return 1
    try:
        with open(args.file, "rb") as f:
            text, encoding = decode_export(f.read())
    except OSError as err:
        print(f"kipu-collector: {err}", file=sys.stderr)
        return 2
    result = convert(text, args.source, options, args.file)
    write_inventory_csv(result.rows, sys.stdout)
    for problem in sorted((*result.notes, *result.errors), key=lambda p: p.line):
        print(problem, file=sys.stderr)
    print(
        f"{args.file}: {len(result.rows)} of {result.read} rows converted (read as {encoding}); "
        f"{len(result.errors)} problems leave rows out, {len(result.notes)} notes",
        file=sys.stderr,
    )
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
