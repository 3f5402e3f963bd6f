"""Word2vec starts for the GNN's token table: real gensim over real tree-sitter graphs, a real Trainer."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from _trainers import quiet_trainer
from streamguard_pl.data.datamodules import GraphDataModule
from streamguard_pl.data.token_vectors import leaf_streams, word2vec_bucket_vectors
from streamguard_pl.models import GNNClassifier

BUCKETS = 1024  # tests/conftest.py TINY_GNN


@pytest.fixture(scope="module")
def graph_dm(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> GraphDataModule:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS,
                         output_dir=str(tmp_path_factory.mktemp("w2v_run")))
    dm.setup("fit")
    return dm


def test_leaf_streams_are_the_leaves_in_source_order(graph_dm) -> None:
    g = graph_dm.datasets["train"].graphs[0]
    stream = leaf_streams([g])[0]
    leaves = g.x[:, 1][g.x[:, 1] > 0].tolist()
    assert stream == [str(b) for b in leaves] and len(stream) > 10


def test_vectors_cover_frequent_buckets_standardised_and_repeatable(graph_dm) -> None:
    graphs = graph_dm.datasets["train"].graphs
    vectors, known = word2vec_bucket_vectors(graphs, BUCKETS, 16, seed=3)
    counts = Counter(w for s in leaf_streams(graphs) for w in s)
    frequent = {int(w) for w, c in counts.items() if c >= 2}
    assert set(known.nonzero().view(-1).tolist()) == frequent
    kv = vectors[known]
    assert torch.allclose(kv.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(kv.std(0), torch.ones(16), atol=1e-4)
    assert vectors[~known].abs().sum() == 0
    again, _ = word2vec_bucket_vectors(graphs, BUCKETS, 16, seed=3)
    other, _ = word2vec_bucket_vectors(graphs, BUCKETS, 16, seed=4)
    assert torch.equal(vectors, again) and not torch.allclose(vectors, other)


def test_buckets_beyond_the_table_are_refused(graph_dm) -> None:
    with pytest.raises(ValueError, match="token_buckets=8"):
        word2vec_bucket_vectors(graph_dm.datasets["train"].graphs[:20], 8, 4)


class TableAtStart(Callback):
    def on_fit_start(self, trainer: L.Trainer, pl_module: GNNClassifier) -> None:
        self.table = pl_module.encoder.token_embedding.weight.detach().clone()


@pytest.mark.parametrize("token_init", ["random", "word2vec"])
def test_fit_starts_the_token_table_from_word2vec(graph_dm, tmp_path, tiny_gnn, token_init: str) -> None:
    L.seed_everything(11)
    model = GNNClassifier(**tiny_gnn, token_init=token_init, scheduler="none")
    random_start = model.encoder.token_embedding.weight.detach().clone()
    seen = TableAtStart()
    quiet_trainer(tmp_path, fast_dev_run=1, callbacks=[seen]).fit(model, graph_dm)
    vectors, known = word2vec_bucket_vectors(graph_dm.datasets["train"].graphs, BUCKETS, tiny_gnn["hidden_dim"],
                                             seed=11)
    if token_init == "random":
        assert torch.equal(seen.table, random_start)
    else:
        assert torch.equal(seen.table[known], vectors[known])
        assert torch.equal(seen.table[~known], random_start[~known])  # rare buckets keep their random rows
    assert not torch.equal(model.encoder.token_embedding.weight, seen.table)  # and the table then trains


def test_word2vec_start_needs_graph_data(tmp_path, tiny_gnn) -> None:
    model = GNNClassifier(**tiny_gnn, token_init="word2vec")
    with pytest.raises(ValueError, match="needs a GraphDataModule"):
        model.init_token_vectors(None)
