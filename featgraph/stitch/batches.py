"""What a stitch analysis reads and encodes, in one import: the batches come from the one activation iterator
(:func:`featgraph.activations.batches.iter_acts`, with ``StoreRows``, ``n_rows`` and ``ActivationsLike``), the
column encodes and dtype copies from :mod:`featgraph.sae` (where every "encode some columns" lives).
"""

from __future__ import annotations

from featgraph.activations.batches import (  # noqa: F401  (the stitch modules import these from here)
    EVAL_BATCH,
    Activations,
    ActivationsLike,
    StoreRows,
    iter_acts,
    n_rows,
)
from featgraph.sae import as_dtype, encode_columns  # noqa: F401  (re-exported for the stitch modules)
