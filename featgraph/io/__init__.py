"""IO room: every file featgraph reads from a user and every folder it writes.

``readers`` (JSON, safetensors) and ``arrays`` (npy, npz, faiss files) are the checked readers: sizes and headers
validated before any library reads, one-line errors naming the file, nothing unpickled; ``weights`` adds the policy
that SAE weights are floating point (below both ``sae`` and ``formats``, which read through it). ``files`` writes
single files atomically (``write_json``, ``atomic_write``, featgraph's temporary names); ``checks`` refuses a bad
output folder before anything slow runs; ``output`` writes a command's folder as a whole (``open_output``, manifest,
stale temporaries, activation stores in place). No torch here: the index reads through this room.

Public names: read_json, read_safetensors, safetensors_header, read_npy, read_npz, write_json, atomic_write,
check_output, open_output, atomic_dir.
"""
