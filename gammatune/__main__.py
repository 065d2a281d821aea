"""``python -m gammatune``."""

from gammatune.cli import app

app(prog_name="gammatune")
