"""``featgraph explore``'s config: the families folder and the explain folder in, one HTML page out.

Kept in the explorer room (``featgraph/config.py`` is full); built on :class:`featgraph.config.CommandConfig` so that
``to_json()`` and ``inputs()`` work like every other command's.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from featgraph.config import CommandConfig, check_int, check_path, run_only
from featgraph.errors import ConfigError


@dataclasses.dataclass
class ExploreConfig(CommandConfig):
    """``featgraph explore FAMILIES_DIR --examples DIR --out page.html``.

    ``contexts``: top contexts embedded per feature (the highest-activating first); ``window``: tokens kept on
    each side of a context's max token. Both bound the page's size: the bundled ladder's 8,640 features with 3
    contexts of 2 x 6 + 1 tokens each make a page of a few MB.
    """

    command: ClassVar[str] = "explore"
    path_fields: ClassVar[tuple[str, ...]] = ("families", "examples")
    families: str = ""
    examples: str = ""
    out: str = ""
    contexts: int = 3
    window: int = 6
    title: str | None = None
    # accepted like every command's; the run has no bar to show: reading and rendering the bundled ladder's page
    # takes about 4 s (3.4 s reading, 0.3 s rendering under a load of 17 on 2 cores)
    progress: bool = run_only(True)

    def __post_init__(self) -> None:
        self.families = check_path("families", self.families)
        self.examples = check_path("examples", self.examples)
        self.out = check_path("out", self.out)
        self.contexts = check_int("contexts", self.contexts, minimum=1)
        self.window = check_int("window", self.window, minimum=0)
        if self.title is not None and not isinstance(self.title, str):
            raise ConfigError(f"title must be a string, got {self.title!r}")
