"""Formats room: read and write SAEs in the layouts users bring.

One module per format (``featgraph``, ``saelens``, ``sparsify``, ``dictionary_learning``, ``gemmascope``), each
with ``read_decoder`` / ``read_sae`` (and ``save`` for the foreign ones) and a docstring stating its file layout;
``common`` holds the checked tensor/cfg helpers they share; ``dispatch`` detects a path's format and calls the
right module. A new format is a new module here plus one line in ``dispatch``'s detection.

Public names: detect_format, load_decoder, load_sae, save_saelens, save_sparsify, save_dictionary_learning,
save_gemmascope, FORMATS. Importing this package does not import torch (format modules load on first use).
"""

from featgraph.formats.dispatch import (
    FORMATS,
    detect_format,
    load_decoder,
    load_sae,
    save_dictionary_learning,
    save_gemmascope,
    save_saelens,
    save_sparsify,
)

__all__ = ["FORMATS", "detect_format", "load_decoder", "load_sae", "save_dictionary_learning",
           "save_gemmascope", "save_saelens", "save_sparsify"]
