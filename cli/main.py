"""``featgraph``: the click app. Each command lives in its own module and is a thin shell over library calls.

Commands are loaded lazily (click's documented LazyGroup pattern) so that ``featgraph index --help`` does not import
torch or transformer-lens. Every :class:`featgraph.FeatgraphError` becomes a one-line message and exit code 1.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

# command name -> "module:attribute" (modules under featgraph.cli)
COMMANDS = {
    "collect": "cmd_collect:collect",
    "index": "cmd_index:index",
    "families": "cmd_families:families",
    "train": "cmd_train:train",
    "eval": "cmd_eval:eval_cmd",
    "stitch": "cmd_stitch:stitch",
    "frankenstein": "cmd_frankenstein:frankenstein",
    "report": "cmd_report:report",
    "releases": "cmd_releases:releases",
    "compare": "cmd_compare:compare",
    "neighbors": "cmd_neighbors:neighbors",
    "explain": "cmd_explain:explain",
    "explore": "cmd_explore:explore",
    "atlas": "cmd_atlas:atlas",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in COMMANDS if self._spec_exists(n))

    @staticmethod
    def _spec_exists(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(f"{__package__}.{module}") is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not self._spec_exists(cmd_name):
            return None
        module, attr = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="featgraph")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """featgraph: cross-width similarity graphs, families, hybrid and Frankenstein SAEs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: FeatgraphError -> one line on stderr, exit 1."""
    from featgraph.errors import FeatgraphError

    try:
        cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except FeatgraphError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
