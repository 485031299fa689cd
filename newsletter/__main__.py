"""`python -m newsletter` runs the command line."""

from .cli import app

app(prog_name="newsletter")
