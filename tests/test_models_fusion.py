"""FusionClassifier with real Trainers: discriminative LRs through the schedule, freezing and unfreezing,
loading real part checkpoints, reloading a fusion checkpoint without them, the three fusion heads."""
from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import pytest

from _trainers import quiet_trainer
import torch
from lightning.pytorch.callbacks import Callback

from streamguard_pl.data.datamodules import FusionDataModule, GraphDataModule, TokenDataModule
from streamguard_pl.models import FusionClassifier, GNNClassifier, TransformerClassifier
from streamguard_pl.errors import OptionError
from streamguard_pl.models.compat import tokenizer_sha256
from streamguard_pl.models.fusion import load_classifier_checkpoint

TOKENS = {"bpe_vocab_size": 400, "max_length": 128}
BUCKETS = 1024


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **{"num_sanity_val_steps": 0, **kw})


@pytest.fixture(scope="module")
def fusion_dm(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> FusionDataModule:
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS,
                          output_dir=str(tmp_path_factory.mktemp("fusion_run")), **TOKENS)
    dm.setup("fit")
    return dm


def fresh(dm: FusionDataModule, tiny_roberta: dict, tiny_gnn: dict, **kw) -> FusionClassifier:
    """Both encoders built now (vocab from the datamodule's tokenizer), so their initial weights can be kept."""
    torch.manual_seed(0)
    tok = dm.tokenizer
    transformer = {"config": tiny_roberta, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id}
    opts = dict(transformer=transformer, gnn=tiny_gnn, fusion_hidden=16, lr=1e-2)
    opts.update(kw)
    return FusionClassifier(**opts)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return copy.deepcopy(module.state_dict())


def same(module: torch.nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in module.state_dict().items())


class Recorder(Callback):
    """The lr of each named group before every optimizer step, and which parameters had a gradient."""

    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []
        self.grad_names: list[set[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})

    def on_after_backward(self, trainer, pl_module) -> None:
        self.grad_names.append({n for n, p in pl_module.named_parameters() if p.grad is not None})


# ---------------------------------------------------------------------------- learning rates


def test_param_groups_keep_their_lr_ratios_through_warmup_and_decay(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, lr=1e-3, warmup_ratio=0.4, scheduler="linear")
    rec = Recorder()
    trainer(tmp_path, max_steps=6, limit_val_batches=0, callbacks=[rec]).fit(model, fusion_dm)
    groups = {"transformer", "transformer_no_decay", "gnn", "gnn_no_decay", "head", "head_no_decay"}
    assert set(rec.lrs[0]) == groups
    # warmup 2 steps (int(0.4 * 6)), then linear decay to 0 at step 6
    base = [1e-3 * f for f in (0.0, 0.5, 1.0, 0.75, 0.5, 0.25)]
    assert [r["head"] for r in rec.lrs] == pytest.approx(base, abs=1e-12)
    for step, r in enumerate(rec.lrs):
        for name, mult in (("transformer", 0.1), ("gnn", 0.5), ("head", 1.0)):
            assert r[name] == pytest.approx(base[step] * mult, abs=1e-12), (step, name)
            assert r[name + "_no_decay"] == r[name]
    opt = model.trainer.optimizers[0]
    assert {g["name"]: g["lr_mult"] for g in opt.param_groups} == {
        "transformer": 0.1, "transformer_no_decay": 0.1, "gnn": 0.5, "gnn_no_decay": 0.5, "head": 1.0, "head_no_decay": 1.0}


def test_custom_multipliers_set_the_group_lrs(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, lr=2e-3, scheduler="none", lr_mult_transformer=0.25,
                  lr_mult_gnn=2.0, lr_mult_head=0.5)
    rec = Recorder()
    trainer(tmp_path, max_steps=2, limit_val_batches=0, callbacks=[rec]).fit(model, fusion_dm)
    for r in rec.lrs:
        assert (r["transformer"], r["gnn"], r["head"]) == pytest.approx((5e-4, 4e-3, 1e-3))


# ---------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("frozen", ["transformer", "gnn"])
def test_a_frozen_encoder_gets_no_gradient_and_does_not_change(fusion_dm, tmp_path, tiny_roberta, tiny_gnn, frozen) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, freeze_transformer=frozen == "transformer",
                  freeze_gnn=frozen == "gnn")
    frozen_mod = model.text if frozen == "transformer" else model.graph
    other_mod = model.graph if frozen == "transformer" else model.text
    prefix = "text." if frozen == "transformer" else "graph."
    frozen_before, other_before, head_before = snapshot(frozen_mod), snapshot(other_mod), snapshot(model.fusion_head)
    rec = Recorder()
    trainer(tmp_path, max_steps=3, limit_val_batches=0, callbacks=[rec]).fit(model, fusion_dm)
    assert len(rec.grad_names) == 3
    for names in rec.grad_names:
        assert not any(n.startswith(prefix) for n in names)
        assert any(n.startswith("fusion_head.") for n in names)
    assert same(frozen_mod, frozen_before)  # bit-identical: no update, no weight decay
    assert not same(other_mod, other_before) and not same(model.fusion_head, head_before)


def test_freezing_both_encoders_still_trains_the_head(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, freeze_transformer=True, freeze_gnn=True)
    head_before = snapshot(model.fusion_head)
    trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(model, fusion_dm)
    assert not same(model.fusion_head, head_before)


class EpochSnapshots(Callback):
    def __init__(self) -> None:
        self.text: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.text.append(snapshot(pl_module.text))


def test_unfreeze_after_one_epoch_trains_the_encoders_from_epoch_one(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, freeze_transformer=True, freeze_gnn=True, unfreeze_after_epochs=1)
    text0, graph0 = snapshot(model.text), snapshot(model.graph)
    snaps, rec = EpochSnapshots(), Recorder()
    trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0, callbacks=[snaps, rec]).fit(model, fusion_dm)
    assert all(torch.equal(v, text0[k]) for k, v in snaps.text[0].items())  # epoch 0: frozen
    assert not all(torch.equal(v, snaps.text[0][k]) for k, v in snaps.text[1].items())  # epoch 1: trained
    assert not same(model.graph, graph0)
    assert not any(n.startswith(("text.", "graph.")) for n in rec.grad_names[0] | rec.grad_names[1])
    assert any(n.startswith("text.") for n in rec.grad_names[2]) and any(n.startswith("graph.") for n in rec.grad_names[2])


def test_unfreeze_still_applies_when_resuming_after_that_epoch(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    kw = dict(freeze_transformer=True, freeze_gnn=True, unfreeze_after_epochs=1)
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, **kw)
    tr = trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=0)
    tr.fit(model, fusion_dm)
    ckpt = tmp_path / "epoch1.ckpt"
    tr.save_checkpoint(ckpt)
    resumed = fresh(fusion_dm, tiny_roberta, tiny_gnn, **kw)
    rec = Recorder()
    trainer(tmp_path, max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[rec]).fit(
        resumed, fusion_dm, ckpt_path=str(ckpt), weights_only=True)
    assert rec.grad_names and all(any(n.startswith("text.") for n in names) for names in rec.grad_names)


# ---------------------------------------------------------------------------- checkpoints


@pytest.fixture
def part_checkpoints(tiny_corpus: Path, tmp_path: Path, tiny_roberta: dict, tiny_gnn: dict) -> dict[str, Path]:
    """Real transformer and GNN checkpoints from fast_dev_run fits, plus the tokenizer the transformer used."""
    out = tmp_path / "parts"
    tdm = TokenDataModule(data_dir=str(tiny_corpus), batch_size=8, output_dir=str(out / "t"), **TOKENS)
    t_tr = trainer(out / "t", fast_dev_run=2)
    t_tr.fit(TransformerClassifier(config=tiny_roberta), tdm)
    t_tr.save_checkpoint(out / "transformer.ckpt")
    gdm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(out / "g"))
    g_tr = trainer(out / "g", fast_dev_run=2)
    g_tr.fit(GNNClassifier(**tiny_gnn), gdm)
    g_tr.save_checkpoint(out / "gnn.ckpt")
    return {"transformer": out / "transformer.ckpt", "gnn": out / "gnn.ckpt", "tokenizer": out / "t" / "tokenizer"}


def encoder_state(ckpt: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}


def test_part_checkpoints_load_and_the_encoders_equal_them(part_checkpoints, tiny_corpus, tmp_path) -> None:
    model = FusionClassifier(transformer_ckpt=str(part_checkpoints["transformer"]), gnn_ckpt=str(part_checkpoints["gnn"]),
                             fusion_hidden=16, fusion="concat")
    for part, mod in (("transformer", model.text.encoder), ("gnn", model.graph.encoder)):
        want = encoder_state(part_checkpoints[part])
        got = mod.state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), part
    assert model.text.head is None and model.graph.head is None  # only the encoders are fused
    assert model.hparams.transformer["_resolved"] and model.hparams.gnn["token_buckets"] == BUCKETS

    # it trains on a fusion datamodule with the transformer's own tokenizer, then reloads without the parts
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(tmp_path / "run"),
                          tokenizer_name_or_path=str(part_checkpoints["tokenizer"]), max_length=128)
    tr = trainer(tmp_path, fast_dev_run=2)
    tr.fit(model, dm)
    fusion_ckpt = tmp_path / "fusion.ckpt"
    tr.save_checkpoint(fusion_ckpt)
    part_checkpoints["transformer"].unlink()
    part_checkpoints["gnn"].unlink()
    loaded = FusionClassifier.load_from_checkpoint(fusion_ckpt, weights_only=True)
    batch = next(iter(dm.val_dataloader()))
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
    assert loaded.hparams.fusion == "concat"
    # what each part was trained on travels in the fusion checkpoint
    assert loaded.hparams.transformer["tokenizer_sha256"] == tokenizer_sha256(dm)
    assert loaded.hparams.gnn["graph_features"]["edge_types"] == ["ast", "ncs", "cfg", "dfg"]


def test_residual_fusion_starts_as_its_transformer_and_then_learns_from_the_graph(part_checkpoints, tiny_corpus, tmp_path) -> None:
    transformer = load_classifier_checkpoint(part_checkpoints["transformer"], TransformerClassifier)
    model = FusionClassifier(transformer_ckpt=str(part_checkpoints["transformer"]), gnn_ckpt=str(part_checkpoints["gnn"]),
                             fusion_hidden=16, fusion="residual", lr=1e-2)
    assert model.text.head is None and model.fusion_head.text_head is not None
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(tmp_path / "run"),
                          tokenizer_name_or_path=str(part_checkpoints["tokenizer"]), max_length=128)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    model.eval(), transformer.eval()
    with torch.no_grad():
        start = model(batch)
        assert torch.allclose(start, transformer(batch["tokens"]), atol=1e-6)  # exactly the transformer's logits

    model.train()
    tr = trainer(tmp_path, fast_dev_run=3)
    tr.fit(model, dm)
    # the zero layer moved at the first step, and through it the GNN learned from the second on
    assert model.fusion_head.classifier.net[-1].weight.abs().sum() > 0
    gnn_before = encoder_state(part_checkpoints["gnn"])
    gnn_after = model.graph.encoder.state_dict()
    assert any(not torch.equal(gnn_after[k], gnn_before[k]) for k in gnn_before if gnn_before[k].is_floating_point())
    model.eval()
    with torch.no_grad():
        moved = model(batch)
    assert not torch.allclose(moved, start)
    tr.save_checkpoint(tmp_path / "residual.ckpt")
    loaded = FusionClassifier.load_from_checkpoint(tmp_path / "residual.ckpt", weights_only=True)
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(batch), moved)


def test_the_residual_kind_and_a_text_head_go_together() -> None:
    from streamguard_pl.nets.fusion_head import ClassifierHead, FusionHead

    with pytest.raises(ValueError, match="residual fusion kind, and only it, takes the text model's head"):
        FusionHead(8, 8, 8, "residual")
    with pytest.raises(ValueError, match="residual fusion kind, and only it"):
        FusionHead(8, 8, 8, "gated", text_head=ClassifierHead(8))


def test_a_tokenizer_larger_than_the_loaded_transformer_is_refused(part_checkpoints, tiny_corpus, tmp_path) -> None:
    model = FusionClassifier(transformer_ckpt=str(part_checkpoints["transformer"]), gnn_ckpt=str(part_checkpoints["gnn"]),
                             fusion_hidden=16)
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(tmp_path / "run"),
                          bpe_vocab_size=1500, max_length=128)
    with pytest.raises(ValueError, match=r"tokenizer has \d+ tokens but the fused transformer's embedding has \d+"):
        trainer(tmp_path, fast_dev_run=1).fit(model, dm)


def test_part_checkpoints_refuse_features_they_were_not_trained_on(part_checkpoints, tiny_corpus, tmp_path) -> None:
    def fusion() -> FusionClassifier:
        return FusionClassifier(transformer_ckpt=str(part_checkpoints["transformer"]),
                                gnn_ckpt=str(part_checkpoints["gnn"]), fusion_hidden=16)

    own_tokenizer = {"tokenizer_name_or_path": str(part_checkpoints["tokenizer"]), "max_length": 128}
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, edge_types=["ast", "cfg"],
                          output_dir=str(tmp_path / "a"), **own_tokenizer)
    with pytest.raises(OptionError, match=r"model.gnn was trained on other features than the datamodule gives "
                                          r"\(edge_types: trained \['ast', 'ncs', 'cfg', 'dfg'\], data \['ast', 'cfg'\]\)"):
        trainer(tmp_path, fast_dev_run=1).fit(fusion(), dm)
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(tmp_path / "b"),
                          bpe_vocab_size=300, max_length=128)  # a BPE of its own, smaller than the transformer's
    with pytest.raises(OptionError, match=r"model.transformer was trained on other features .*tokenizer_sha256"):
        trainer(tmp_path, fast_dev_run=1).fit(fusion(), dm)


def test_part_settings_a_checkpoint_overrides_are_named(part_checkpoints, tiny_gnn) -> None:
    with pytest.warns(UserWarning, match=r"model.gnn: hidden_dim=99 not used: the gnn comes from gnn_ckpt .*gnn\.ckpt, "
                                         rf"where hidden_dim={tiny_gnn['hidden_dim']}"):
        model = FusionClassifier(transformer_ckpt=str(part_checkpoints["transformer"]), gnn_ckpt=str(part_checkpoints["gnn"]),
                                 gnn={**tiny_gnn, "hidden_dim": 99}, fusion_hidden=16)
    assert model.graph.hparams.hidden_dim == tiny_gnn["hidden_dim"]


def test_a_part_checkpoint_of_the_wrong_kind_is_refused(part_checkpoints) -> None:
    with pytest.raises(ValueError, match="not a TransformerClassifier checkpoint"):
        load_classifier_checkpoint(part_checkpoints["gnn"], TransformerClassifier)
    with pytest.raises(ValueError, match=r"transformer\.ckpt: not a GNNClassifier checkpoint"):
        load_classifier_checkpoint(part_checkpoints["transformer"], GNNClassifier)
    with pytest.raises(FileNotFoundError, match="GNNClassifier checkpoint not found"):
        load_classifier_checkpoint(part_checkpoints["gnn"].with_name("nope.ckpt"), GNNClassifier)


def test_fresh_fusion_checkpoint_reloads_without_the_datamodule(fusion_dm, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = FusionClassifier(transformer={"config": tiny_roberta}, gnn=tiny_gnn, fusion_hidden=16)
    assert model.text is None  # from scratch: sized by the datamodule's tokenizer at setup
    tr = trainer(tmp_path, fast_dev_run=1)
    tr.fit(model, fusion_dm)
    assert model.text.encoder.model.config.vocab_size == len(fusion_dm.tokenizer)
    tr.save_checkpoint(tmp_path / "f.ckpt")
    loaded = FusionClassifier.load_from_checkpoint(tmp_path / "f.ckpt", weights_only=True)
    assert loaded.text is not None
    batch = next(iter(fusion_dm.val_dataloader()))
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_graph_settings_that_do_not_fit_the_fusion_gnn_are_a_clear_error(tiny_corpus, tmp_path, tiny_roberta, tiny_gnn) -> None:
    model = FusionClassifier(transformer={"config": tiny_roberta}, gnn=tiny_gnn, fusion_hidden=16)
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=4096, output_dir=str(tmp_path), **TOKENS)
    with pytest.raises(ValueError, match=r"data.token_buckets=4096 but model.gnn.token_buckets=1024"):
        trainer(tmp_path, fast_dev_run=1).fit(model, dm)
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, reverse_edges=True,
                          output_dir=str(tmp_path), **TOKENS)
    model = FusionClassifier(transformer={"config": tiny_roberta}, gnn={**tiny_gnn, "num_edge_types": 4}, fusion_hidden=16)
    with pytest.raises(ValueError, match=r"the data has 8 edge types but model.gnn.num_edge_types=4"):
        trainer(tmp_path, fast_dev_run=1).fit(model, dm)


# ---------------------------------------------------------------------------- heads and the default


@pytest.mark.parametrize("kind", ["concat", "gated", "cross_attention", "residual"])
def test_every_fusion_head_trains(fusion_dm, tmp_path, tiny_roberta, tiny_gnn, kind) -> None:
    model = fresh(fusion_dm, tiny_roberta, tiny_gnn, fusion=kind)
    rec = Recorder()
    trainer(tmp_path, fast_dev_run=2, callbacks=[rec]).fit(model, fusion_dm)
    batch = next(iter(fusion_dm.val_dataloader()))
    model.eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (batch["labels"].shape[0], 2) and torch.isfinite(logits).all()
    names = rec.grad_names[-1]
    assert any(n.startswith("text.") for n in names) and any(n.startswith("graph.") for n in names)
    if kind == "gated":
        assert "fusion_head.gate.weight" in names
    if kind == "cross_attention":
        assert "fusion_head.attention.in_proj_weight" in names


def test_fast_dev_run_on_the_embedded_default_corpus(tmp_path) -> None:
    """No data_dir, no encoder settings: the generated corpus, SMALL_ROBERTA from scratch and the default GNN."""
    dm = FusionDataModule(synthetic_size=120, batch_size=4, max_length=128, bpe_vocab_size=400,
                          output_dir=str(tmp_path / "run"))
    model = FusionClassifier()
    rec = Recorder()
    trainer(tmp_path, fast_dev_run=1, callbacks=[rec]).fit(model, dm)
    assert dm.data_summary()["source"] == "synthetic"
    assert sum(dm.data_summary()["split_sizes"].values()) == 120
    assert model.text.encoder.out_dim == 256 and model.graph.hparams.token_buckets == dm.token_buckets
    assert len(rec.grad_names) == 1 and any(n.startswith("fusion_head.") for n in rec.grad_names[0])
    assert (tmp_path / "run" / "graph_statistics.json").is_file()
