"""Hub room: SAEs by the names researchers use (SAELens release names, ``hf://`` paths) and their provenance.

``releases`` reads the shipped release registry (``registry/releases.json.gz``) and lists it, ``resolve`` turns a
name into local SAE paths, ``fetch`` downloads the files a reader needs into the Hugging Face cache (or reports an
offline miss in one line), ``provenance`` remembers where each resolved SAE came from and adds Neuronpedia links to
results. A new naming scheme goes in ``resolve``; everything here is imported only when a name is used.

Public names: resolve, looks_like_name, source_of, display_name, HubSource, load_registry, registry_path,
release_sites, ReleaseSite, set_progress, progress_bars, annotate_results, sources_of, REGISTRY_PATH, REGISTRY_ENV.
"""

from featgraph.hub.fetch import progress_bars, set_progress
from featgraph.hub.provenance import NEURONPEDIA, HubSource, annotate_results, display_name, source_of, sources_of
from featgraph.hub.releases import (
    REGISTRY_ENV,
    REGISTRY_PATH,
    Registry,
    ReleaseSite,
    load_registry,
    registry_path,
    release_sites,
)
from featgraph.hub.resolve import looks_like_name, resolve

__all__ = ["NEURONPEDIA", "REGISTRY_ENV", "REGISTRY_PATH", "HubSource", "Registry", "ReleaseSite",
           "annotate_results", "display_name", "load_registry", "looks_like_name", "progress_bars", "registry_path",
           "release_sites", "resolve", "set_progress", "source_of", "sources_of"]
