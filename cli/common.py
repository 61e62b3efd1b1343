"""Options and helpers shared by several commands."""

from __future__ import annotations

import click

from featgraph.activations.text import CORPORA  # stdlib only: no torch at CLI start
from featgraph.config import local_paths  # noqa: F401 (one definition; commands import it from here)

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

# one definition for collect, train and eval: the choices are the pinned corpora themselves (CORPORA), so a new
# corpus shows up in every command that reads text
corpus_option = click.option(
    "--corpus",
    type=click.Choice(list(CORPORA)),
    default="default",
    show_default=True,
    help="Pinned offline corpus when no --text is given ('stdlib': pydoc topics + full stdlib sources).",
)
