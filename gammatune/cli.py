"""The gammatune command line: thin commands; the only place that prints or exits."""

from __future__ import annotations

import typer

from gammatune import __version__

app = typer.Typer(
    name="gammatune",
    help="Find the right focal-loss gamma and alpha for an imbalanced classification problem.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Find the right focal-loss gamma and alpha for an imbalanced classification problem."""
    if version:
        typer.echo(f"gammatune {__version__}")
        raise typer.Exit()
