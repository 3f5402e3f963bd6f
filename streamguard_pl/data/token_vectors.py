"""Word2vec vectors for the GNN's token buckets, learnt from the train split's own token streams.

Devign starts its GGNN from word2vec node features. A randomly started token table learns only
from the 0/1 label, so an identifier seen in a handful of training functions keeps a nearly random
vector; word2vec places it next to the tokens it is used like (``len`` near ``size``) from every
function it occurs in, labels unused. Trained on the train split only (no outside model or data),
over each graph's leaves in source order, i.e. over bucket ids, so a bucket's vector is what the
network's table needs whatever tokens share it.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch_geometric.data import Data


def leaf_streams(graphs: Iterable[Data]) -> list[list[str]]:
    """Each graph's leaf token buckets in source order (node order; see graphs.py), as words."""
    streams = []
    for g in graphs:
        buckets = g.x[:, 1]
        streams.append([str(b) for b in buckets[buckets > 0].tolist()])
    return streams


def word2vec_bucket_vectors(
    graphs: Sequence[Data],
    token_buckets: int,
    dim: int,
    seed: int = 0,
    window: int = 5,
    epochs: int = 5,
    min_count: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors [token_buckets, dim], known [token_buckets] bool) from CBOW word2vec over leaf streams.

    Vectors are standardised to zero mean and unit std per dimension, the scale of nn.Embedding's
    N(0, 1) start, so the type embedding added to them is neither drowned nor dominant. Buckets that
    occur fewer than `min_count` times are not `known`; their rows are zero and the caller keeps its own.
    One worker thread: gensim is only repeatable single-threaded.
    """
    from gensim.models import Word2Vec

    streams = [s for s in leaf_streams(graphs) if s]
    if not streams:
        raise ValueError("no graph has a token leaf: word2vec needs the train split's tokens")
    model = Word2Vec(streams, vector_size=dim, window=window, min_count=min_count, sg=0, epochs=epochs,
                     workers=1, seed=seed)
    words = model.wv.index_to_key
    rows = torch.tensor([int(w) for w in words], dtype=torch.long)
    if rows.numel() and int(rows.max()) >= token_buckets:
        raise ValueError(f"a graph has token bucket {int(rows.max())} but token_buckets={token_buckets}")
    vecs = torch.from_numpy(np.asarray(model.wv.vectors, dtype=np.float32))
    vecs = (vecs - vecs.mean(0)) / vecs.std(0).clamp(min=1e-6)
    out = torch.zeros(token_buckets, dim)
    known = torch.zeros(token_buckets, dtype=torch.bool)
    out[rows], known[rows] = vecs, True
    return out, known
