"""Matching room: exact cross-width matching of SAE decoder directions (max cos, argmax, every edge > tau).

``core`` holds the concepts (``PairMatch``, unit rows, the rounding bound, "novel", the float64 and faiss
references and the exactness argument in its docstring), ``blocked`` the streamed bf16/fp32 GEMM engine and the
device choice, ``api`` the entry points that put them together. A change to how pairs are matched goes here;
what is done with the matches (families, graphs) lives in ``featgraph.families`` / ``featgraph.graph``.

Public names: PairMatch, match_pair, match_ladder, match_saes, normalize_rows, resolve_method_device, is_novel,
sae_unit_rows, rounding_margin, match_brute64, match_faiss, METHODS. Importing this package does not import torch.
"""

from featgraph.matching.api import match_ladder, match_pair, match_saes, resolve_method_device
from featgraph.matching.core import (
    METHODS,
    PairMatch,
    is_novel,
    match_brute64,
    match_faiss,
    normalize_rows,
    rounding_margin,
    sae_unit_rows,
)

__all__ = ["METHODS", "PairMatch", "is_novel", "match_brute64", "match_faiss", "match_ladder", "match_pair",
           "match_saes", "normalize_rows", "resolve_method_device", "rounding_margin", "sae_unit_rows"]
