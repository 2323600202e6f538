"""Peer libraries (pykan, deepsplines, inkan, KServe, BentoML), each run from its own virtual environment."""
