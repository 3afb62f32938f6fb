"""``spark-integrations sandbox``: run the sandbox provider in the foreground.

The flags come from :data:`sandbox.FLAGS`, the same list ``python -m spark_integrations.sandbox``
uses. Bad values
are a usage error (exit 2, one sentence); an address that cannot be bound exits 1.
This module imports nothing of the fleet but :mod:`sandbox`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from spark_integrations.sandbox import FLAGS, options_from_flags, serve

__all__ = ["sandbox_command"]

_TYPES: dict[type, click.ParamType[Any]] = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _with_flags(func: Callable[..., None]) -> Callable[..., None]:
    for flag in reversed(FLAGS):
        func = click.option(
            flag.name,
            flag.field,
            type=_TYPES[flag.kind],
            default=None,
            metavar=flag.metavar,
            help=f"{flag.help} [default: {flag.default_text}]",
        )(func)
    return func


@click.command("sandbox", context_settings={"help_option_names": ["-h", "--help"]})
@_with_flags
def sandbox_command(**values: Any) -> None:
    """Run the sandbox provider (a fake SaaS API) until SIGTERM or SIGINT."""
    try:
        options = options_from_flags(values)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        serve(options)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {options.host}:{options.port} ({exc.strerror or exc})."
        ) from None
