"""Images to vectors: the backbones, the embedding run (local or on Ray), precomputed vectors, and the
project's active vectors.

Second step of the loop. May import ``labeling.project``, ``labeling.data`` (image decoding),
``labeling.device`` (the torch device) and ``storage``.
"""
