"""``python -m spark_integrations.sandbox [flags]``: the flags of ``spark-integrations sandbox``.

Built with argparse from :data:`sandbox.options.FLAGS` (the sandbox imports nothing but the
standard library); bad values exit 2 with one sentence, a port in use exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from spark_integrations.sandbox.options import FLAGS, options_from_flags
from spark_integrations.sandbox.server import serve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sandbox flag (defaults shown in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m spark_integrations.sandbox",
        description="Run the sandbox provider until SIGTERM or SIGINT.",
    )
    for flag in FLAGS:
        parser.add_argument(
            flag.name,
            dest=flag.field,
            type=flag.kind,
            metavar=flag.metavar,
            default=None,
            help=f"{flag.help} (default: {flag.default_text})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, serve; the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = options_from_flags(vars(args))
    except ValueError as exc:
        parser.error(str(exc))
    try:
        serve(options)
    except OSError as exc:
        print(
            f"sandbox: cannot listen on {options.host}:{options.port} ({exc.strerror or exc}).",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
