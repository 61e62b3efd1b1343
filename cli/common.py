"""Options and helpers shared by several commands."""

from __future__ import annotations

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
out_option = click.option(
    "--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder (created if missing)."
)
model_option = click.option(
    "--model",
    "model_name",
    default=None,
    help="Hub name or local folder; default: the bundled SmolLM2-135M (offline).",
)


def local_paths(*names: str | None) -> list[str]:
    """The names that are existing paths (a local model folder is an input; a hub name like "gpt2" is not, and
    must not be compared with --out as if it were ./gpt2)."""
    import os

    return [n for n in names if n and os.path.exists(n)]


def text_option(which_documents: str):
    """--text (repeatable); ``which_documents`` says which side of the document split the command reads."""
    return click.option(
        "--text",
        "text_paths",
        multiple=True,
        type=click.Path(exists=True),
        help=f"Text files or folders (repeatable); default: the offline corpus. {which_documents}",
    )


device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto = CUDA when present, else CPU; both give the same answers.",
)
