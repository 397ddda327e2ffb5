"""trajcorpus: generalist-agent training corpora in Gato's unified token scheme.

The package mirrors the flow of SPEC section 1: ``sources`` read published formats into
``schemas.Episode`` records, ``pipelines`` filters them by best-windowed return, ``tokenizers`` turns
them into one integer stream, ``shards`` writes and streams the sequences, ``cards`` documents them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
