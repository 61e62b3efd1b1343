"""Options and helpers shared by several commands."""

from __future__ import annotations

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
out_option = click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder (created if missing)."
)
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="auto = CUDA when present, else CPU; both give the same answers.",
)
