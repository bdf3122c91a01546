"""kipu-collector command line. The service itself lands in a later release."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kipu.version import __version__


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kipu-collector", description="kipu's NOC collector.")
    p.add_argument("--config.file", dest="config_file", metavar="PATH")
    p.add_argument("--web.listen-address", dest="listen", metavar="HOST:PORT")
    p.add_argument("--version", action="version", version=f"kipu-collector {__version__}")
    p.parse_args(argv)
    print(
        "kipu-collector: the collector service is not in this release yet; "
        "see the README's roadmap",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
