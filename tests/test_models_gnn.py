"""GNNClassifier with real Trainers on real tree-sitter graphs of the embedded corpus."""
from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest

from _trainers import quiet_trainer
import torch
from lightning.pytorch.callbacks import Callback

from torch_geometric.data import Batch, Data

from streamguard_pl.data.datamodules import GraphDataModule
from streamguard_pl.models import GNNClassifier
from streamguard_pl.nets.graph_encoder import GraphEncoder

BUCKETS = 1024  # tests/conftest.py TINY_GNN


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **kw)


@pytest.fixture(scope="module")
def graph_dm(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> GraphDataModule:
    """One datamodule for the module: graphs are built once and reused by every Trainer."""
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS,
                         output_dir=str(tmp_path_factory.mktemp("gnn_run")))
    dm.setup("fit")
    return dm


def first_batch(dm: GraphDataModule):
    return next(iter(dm.val_dataloader()))


class LossLog(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("edge_type_aware", [False, True])
@pytest.mark.parametrize("encoder", ["ggnn", "gcn", "gat", "gin"])
def test_fast_dev_run_trains_every_encoder(graph_dm, tmp_path, tiny_gnn, encoder: str, edge_type_aware: bool) -> None:
    torch.manual_seed(0)
    model = GNNClassifier(**tiny_gnn, encoder=encoder, edge_type_aware=edge_type_aware, scheduler="none")
    before = copy.deepcopy(model.encoder.state_dict())
    log = LossLog()
    trainer(tmp_path, fast_dev_run=2, callbacks=[log]).fit(model, graph_dm)
    assert len(log.losses) == 2 and all(torch.isfinite(torch.tensor(log.losses)))
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("layers.") for k in changed), changed  # message passing got gradients

    # edge-type-aware encoders read batch.edge_type; the plain ones must not depend on it
    model.eval()
    batch = first_batch(graph_dm)
    shuffled = batch.clone()
    shuffled.edge_type = (batch.edge_type + 1) % graph_dm.num_edge_types
    with torch.no_grad():
        differs = not torch.allclose(model(batch), model(shuffled), atol=1e-6)
    assert differs == edge_type_aware


@pytest.mark.parametrize("readout", ["mean", "max", "sum", "attention", "mean_max"])
def test_every_readout_runs_and_gives_one_row_per_graph(graph_dm, tmp_path, tiny_gnn, readout: str) -> None:
    model = GNNClassifier(**tiny_gnn, readout=readout)
    trainer(tmp_path, fast_dev_run=1).fit(model, graph_dm)
    batch = first_batch(graph_dm)
    model.eval()
    with torch.no_grad():
        pooled = model.encoder(batch)
    width = 2 * tiny_gnn["hidden_dim"] if readout == "mean_max" else tiny_gnn["hidden_dim"]
    assert pooled.shape == (batch.num_graphs, width)
    # each row is that graph alone: pooling one graph by itself gives the same vector
    with torch.no_grad():
        alone = model.encoder(type(batch).from_data_list([batch.get_example(3)]))
    assert torch.allclose(pooled[3], alone[0], atol=1e-5)


def test_a_few_steps_on_two_batches_reduce_the_loss(graph_dm, tmp_path, tiny_gnn) -> None:
    torch.manual_seed(0)
    model = GNNClassifier(**{**tiny_gnn, "hidden_dim": 32}, dropout=0.0, loss="ce", lr=3e-3, scheduler="none")
    log = LossLog()
    trainer(tmp_path, overfit_batches=2, max_epochs=30, limit_val_batches=0, callbacks=[log]).fit(model, graph_dm)
    assert len(log.losses) == 60
    first, last = sum(log.losses[:4]) / 4, sum(log.losses[-4:]) / 4
    assert first == pytest.approx(0.69, abs=0.03)  # chance level at the start
    assert last < 0.4 * first, (first, last, " ".join(f"{x:.3f}" for x in log.losses))


def test_a_warmup_ratio_outside_0_1_is_refused(tiny_gnn) -> None:
    for bad in (1.5, 1.0, -0.2):
        with pytest.raises(ValueError, match=r"warmup_ratio is the share of steps spent warming up, in \[0, 1\)"):
            GNNClassifier(**tiny_gnn, warmup_ratio=bad)


def test_a_setting_the_loss_or_schedule_ignores_is_named(tiny_gnn, recwarn) -> None:
    with pytest.warns(UserWarning, match=r"GNNClassifier: focal_gamma=2.0 has no effect with loss='ce'"):
        GNNClassifier(**tiny_gnn, loss="ce", focal_gamma=2.0)
    with pytest.warns(UserWarning, match=r"GNNClassifier: warmup_ratio=0.2 has no effect with scheduler='none'"):
        GNNClassifier(**tiny_gnn, scheduler="none", warmup_ratio=0.2)
    recwarn.clear()
    GNNClassifier(**tiny_gnn, loss="focal", focal_gamma=2.0)
    GNNClassifier(**tiny_gnn, scheduler="cosine", warmup_ratio=0.2)
    GNNClassifier(**tiny_gnn, loss="ce", scheduler="none")  # the defaults (GNN's own warm-up 0.05) say nothing
    assert not [w for w in recwarn if "has no effect" in str(w.message)]


def test_mismatched_token_buckets_is_a_clear_error(tiny_corpus, tmp_path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=512, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"data.token_buckets=512 but model.token_buckets=1024"):
        trainer(tmp_path, fast_dev_run=1).fit(GNNClassifier(**tiny_gnn), dm)


def test_too_few_edge_types_in_the_model_is_a_clear_error(tiny_corpus, tmp_path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, reverse_edges=True,
                         output_dir=str(tmp_path))
    assert dm.num_edge_types == 8
    with pytest.raises(ValueError, match=r"the data has 8 edge types but model.num_edge_types=4"):
        trainer(tmp_path, fast_dev_run=1).fit(GNNClassifier(**tiny_gnn, num_edge_types=4), dm)


def test_checkpoint_round_trip_gives_identical_logits(graph_dm, tmp_path, tiny_gnn) -> None:
    model = GNNClassifier(**tiny_gnn, encoder="gat", edge_type_aware=True, readout="mean_max")
    tr = trainer(tmp_path, max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    tr.fit(model, graph_dm)
    path = tmp_path / "gnn.ckpt"
    tr.save_checkpoint(path)
    loaded = GNNClassifier.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams.encoder == "gat" and loaded.hparams.readout == "mean_max"
    assert loaded.hparams.num_node_types == model.hparams.num_node_types
    batch = first_batch(graph_dm)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
    fresh = GNNClassifier(**tiny_gnn, encoder="gat", edge_type_aware=True, readout="mean_max").eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(batch), loaded(batch))  # the weights came from the file


def test_validation_logs_metrics_for_the_whole_split(graph_dm, tmp_path, tiny_gnn) -> None:
    model = GNNClassifier(**tiny_gnn)
    metrics = trainer(tmp_path).validate(model, graph_dm, verbose=False)[0]
    for name in ("val/loss", "val/accuracy", "val/f1", "val/auroc", "val/average_precision"):
        assert name in metrics
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in graph_dm.val_dataloader():
            preds.append(torch.softmax(model(batch), -1)[:, 1] >= 0.5)
            labels.append(batch.y.view(-1))
    acc = (torch.cat(preds).long() == torch.cat(labels)).float().mean()
    assert metrics["val/accuracy"] == pytest.approx(float(acc), abs=1e-6)


def test_subtoken_columns_feed_the_same_token_table(tiny_corpus, tmp_path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, subtokens=3,
                         output_dir=str(tmp_path))
    model = GNNClassifier(**tiny_gnn)
    log = LossLog()
    trainer(tmp_path, fast_dev_run=2, callbacks=[log]).fit(model, dm)
    assert len(log.losses) == 2 and all(torch.isfinite(torch.tensor(log.losses)))
    batch = first_batch(dm)
    assert batch.x.size(1) == 5 and (batch.x[:, 2:] > 0).any()
    enc = model.encoder.eval()
    table = enc.token_embedding.weight
    whole_only = batch.x[:, 1:2]
    # A node's token vector is the mean over its whole token and its pieces (0 = none, left out).
    rows = batch.x[:, 1:]
    expect = torch.stack([table[r[r > 0]].mean(0) if (r > 0).any() else torch.zeros(table.size(1)) for r in rows])
    assert torch.allclose(enc.token_embedding(rows), expect, atol=1e-6)
    assert torch.allclose(enc.token_embedding(whole_only), table[batch.x[:, 1]])  # two-column graphs: a lookup
    with torch.no_grad():
        no_pieces = batch.clone()
        no_pieces.x = batch.x.clone()
        no_pieces.x[:, 2:] = 0
        assert not torch.allclose(model(batch), model(no_pieces))  # the model reads the pieces


def _chain(tokens: list[int]) -> Data:
    """One inner node over leaves in source order (pre-order ids), like a statement of the builder."""
    n = len(tokens) + 1
    return Data(x=torch.tensor([[1, 0]] + [[2, t] for t in tokens]), num_nodes=n,
                edge_index=torch.tensor([[0] * (n - 1), list(range(1, n))]), edge_type=torch.zeros(n - 1, dtype=torch.long))


def test_sequence_kernel_makes_token_order_count_per_graph_of_a_batch() -> None:
    torch.manual_seed(0)
    seq = GraphEncoder(10, 50, hidden_dim=8, sequence_kernel=3, dropout=0.0).eval()
    plain = GraphEncoder(10, 50, hidden_dim=8, dropout=0.0).eval()
    plain.load_state_dict(seq.state_dict(), strict=False)
    ab, ba = Batch.from_data_list([_chain([5, 6, 7])]), Batch.from_data_list([_chain([7, 6, 5])])
    with torch.no_grad():
        # Token 6 between 5 and 7, or between 7 and 5: the same bag of neighbours for the plain GGNN.
        assert torch.allclose(plain.node_states(ab)[2], plain.node_states(ba)[2])
        assert not torch.allclose(seq.node_states(ab)[2], seq.node_states(ba)[2])
        both = seq.node_states(Batch.from_data_list([_chain([5, 6, 7]), _chain([7, 6, 5])]))
        # No context leaks from one graph of a batch into the next.
        assert torch.allclose(both[:4], seq.node_states(ab), atol=1e-6)
        assert torch.allclose(both[4:], seq.node_states(ba), atol=1e-6)
    with pytest.raises(ValueError, match="sequence_kernel"):
        GraphEncoder(10, 50, sequence_kernel=4)


def test_typed_aggr_mean_where_it_has_no_effect_is_refused() -> None:
    for encoder, typed in (("gcn", True), ("gin", True), ("ggnn", False)):
        with pytest.raises(ValueError, match="typed_aggr='mean' applies to the edge-type-aware GGNN only"):
            GraphEncoder(10, 50, encoder=encoder, edge_type_aware=typed, typed_aggr="mean")
    with pytest.raises(ValueError, match="typed_aggr must be 'add' or 'mean'"):
        GraphEncoder(10, 50, edge_type_aware=True, typed_aggr="max")  # type: ignore[arg-type]
    GraphEncoder(10, 50, encoder="gcn", edge_type_aware=True)  # the default "add" stays accepted (old checkpoints)


@pytest.mark.parametrize("aggr", ["add", "mean"])
def test_typed_aggr_sums_or_averages_the_messages_of_one_edge_type(aggr: str) -> None:
    torch.manual_seed(0)
    enc = GraphEncoder(10, 50, hidden_dim=8, num_layers=1, dropout=0.0, edge_type_aware=True, typed_aggr=aggr).eval()
    one = Batch.from_data_list([_chain([5, 5])])  # node 0 <- nothing; leaves 1, 2 carry the same token
    # The same graph with the edges reversed: node 0 receives two identical messages of type 0.
    two = one.clone()
    two.edge_index = one.edge_index.flip(0)
    single = one.clone()
    single.edge_index, single.edge_type = two.edge_index[:, :1], two.edge_type[:1]
    conv = enc.layers[0]
    with torch.no_grad():
        h = enc.type_embedding(one.x[:, 0]) + enc.token_embedding(one.x[:, 1:])
        m2 = conv(h, two.edge_index, two.edge_type)[0]
        m1 = conv(h, single.edge_index, single.edge_type)[0]
        root = conv(h, two.edge_index[:, :0], two.edge_type[:0])[0]
    expected = root + (2 if aggr == "add" else 1) * (m1 - root)
    assert torch.allclose(m2, expected, atol=1e-5)


def test_global_context_reaches_past_the_layers_hops_within_one_graph_only() -> None:
    torch.manual_seed(0)
    ctx = GraphEncoder(10, 50, hidden_dim=8, num_layers=1, encoder="gin", dropout=0.0, global_context=True).eval()
    local = GraphEncoder(10, 50, hidden_dim=8, num_layers=1, encoder="gin", dropout=0.0).eval()
    local.load_state_dict(ctx.state_dict(), strict=False)

    def two_statements(far_token: int) -> Data:
        # Statement 1 (nodes 0-2) and statement 2 (nodes 3-5) share no edge: one GIN layer cannot link them.
        a, b = _chain([5, 6]), _chain([7, far_token])
        return Data(x=torch.cat([a.x, b.x]), num_nodes=6, edge_index=torch.cat([a.edge_index, b.edge_index + 3], 1),
                    edge_type=torch.zeros(4, dtype=torch.long))

    near, far = Batch.from_data_list([two_statements(8)]), Batch.from_data_list([two_statements(9)])
    with torch.no_grad():
        assert torch.allclose(local.node_states(near)[:3], local.node_states(far)[:3])
        assert not torch.allclose(ctx.node_states(near)[:3], ctx.node_states(far)[:3])
        both = ctx.node_states(Batch.from_data_list([two_statements(8), two_statements(9)]))
        assert torch.allclose(both[:6], ctx.node_states(near), atol=1e-6)  # no context from the next graph
        assert torch.allclose(both[6:], ctx.node_states(far), atol=1e-6)
    with pytest.raises(ValueError, match="global_context needs per-layer message passing"):
        GraphEncoder(10, 50, encoder="ggnn", global_context=True)
