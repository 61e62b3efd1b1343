"""One exception hierarchy for everything a user can get wrong.

The CLI catches :class:`FeatgraphError` and prints its message on one line (exit code 1), so every message must name
the file, the shape or the value at fault. ``assert`` is reserved for internal invariants.
"""

from __future__ import annotations


class FeatgraphError(Exception):
    """Base class of every error featgraph raises for bad user input."""


class SaeFormatError(FeatgraphError, ValueError):
    """A file or folder is missing, corrupt, or in no format featgraph can read."""


class ShapeMismatchError(FeatgraphError, ValueError):
    """Tensors or SAEs whose shapes do not fit together (e.g. d_in differs across a ladder)."""


class BadWeightsError(FeatgraphError, ValueError):
    """Weights that cannot be used: NaN/inf values, or decoder rows of norm zero."""


class ConfigError(FeatgraphError, ValueError):
    """An option outside its valid range (tau outside (0, 1), duplicate SAE names, ...)."""


class StaleIndexError(FeatgraphError):
    """A saved similarity index whose fingerprint no longer matches the SAE weights it was built from."""


class UnsupportedError(FeatgraphError):
    """A well-formed request featgraph refuses on purpose (e.g. adding features to a TopK SAE)."""


class HookNameError(FeatgraphError, KeyError):
    """A transformer-lens hook name the model does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
