"""The featgraph command line (installed as ``featgraph.cli``; console script ``featgraph``)."""
