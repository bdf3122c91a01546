"""kipu-agent command line (flags follow Prometheus exporters)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from agent.config import AgentConfig, load_config
from agent.probes.icmp import IcmpPermissionError
from agent.state import StateError
from kipu.config import ConfigError
from kipu.config.checks import listen_problem
from kipu.version import __version__

LOG_LEVELS = ("debug", "info", "warn", "error")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kipu-agent",
        description="Probe a rural site's link, keep its availability, serve /metrics.",
    )
    p.add_argument(
        "--config.file", dest="config_file", metavar="PATH", help="configuration file (YAML)"
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        action="append",
        metavar="HOST:PORT",
        help="overrides `listen` of the configuration (repeat it to listen on several)",
    )
    p.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=LOG_LEVELS,
        help="log level (default info)",
    )
    p.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    p.add_argument(
        "--print-config-schema",
        action="store_true",
        help="print the configuration's JSON schema and exit",
    )
    p.add_argument("--version", action="version", version=f"kipu-agent {__version__}")
    return p


def config_schema() -> str:
    from kipu.config.schema import json_schema  # noqa: PLC0415 - only for this command

    return json.dumps(json_schema(AgentConfig, "kipu-agent configuration"), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.print_config_schema:
        sys.stdout.write(config_schema())
        return 0
    if not args.config_file:
        parser().error("--config.file is required")
    logging.basicConfig(
        level=args.log_level.upper().replace("WARN", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config_file)
    except ConfigError as err:
        print(f"kipu-agent: invalid configuration:\n{err}", file=sys.stderr)
        return 1
    for listen in args.listen or []:
        if why := listen_problem(listen):
            print(f"kipu-agent: --web.listen-address: {why}", file=sys.stderr)
            return 1
    if args.check_config:
        print(
            f"{args.config_file}: OK, site {config.site_id}, {len(config.probes.targets)} targets"
        )
        return 0

    # aiohttp is not needed for the checks above: import it only to serve.
    from agent.app import Agent, RunLoopEndedError, serve  # noqa: PLC0415

    try:
        agent = Agent(config, args.config_file)
        asyncio.run(serve(agent, args.listen or config.listen))
    except (IcmpPermissionError, StateError, OSError, ValueError) as err:
        print(f"kipu-agent: {err}", file=sys.stderr)
        return 2
    except RunLoopEndedError as err:
        print(f"kipu-agent: {err}; exiting so that it is restarted", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
