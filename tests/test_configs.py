"""Every YAML under configs/ parses with the CLI parser and instantiates trainer, model and datamodule;
the full-size configs carry the values the project promises; the demo configs train one step.

Hub ids (microsoft/codebert-base) cannot be downloaded here, so for instantiation they are pointed at a
tiny RoBERTa + tokenizer saved with `save_pretrained` into a temporary folder; the values themselves are
checked on the parsed config, before any override.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_ROBERTA
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from streamguard_pl.callbacks import CollapseDetection, EMAWeights, GradientStats, MetadataExport, TensorBoardExtras
from streamguard_pl.cli import build_cli, main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
DEMO = [p for p in CONFIGS if p.parent.name == "demo"]
OUR_CALLBACKS = {CollapseDetection, GradientStats, MetadataExport, TensorBoardExtras}
#: Configs that average their weights (EMA decay per step); the Devign transformer's ranking gains from it (docs/devign.md).
EMA_DECAY = {"devign/transformer.yaml": 0.998}

#: Configs that select their checkpoint on something else than their family's metric (docs/devign.md).
MONITOR = {"devign/gnn.yaml": "val/auroc", "devign/full/gnn.yaml": "val/auroc",
           "devign/fusion.yaml": "val/auroc", "devign/full/fusion.yaml": "val/auroc"}

#: What the issue asks of the full-size configs, as dotted keys of the parsed config.
EXPECTED: dict[str, dict[str, Any]] = {
    "transformer.yaml": {
        "model.class_path": "streamguard_pl.models.TransformerClassifier",
        "model.init_args.model_name_or_path": "microsoft/codebert-base",
        "data.class_path": "streamguard_pl.data.TokenDataModule",
        "data.init_args.tokenizer_name_or_path": "microsoft/codebert-base",
        "data.init_args.max_length": 512,
        "data.init_args.batch_size": 64,
        "trainer.max_epochs": 10,
        "model.init_args.warmup_ratio": 0.1,
        "model.init_args.weight_decay": 0.01,
    },
    "gnn.yaml": {
        "model.class_path": "streamguard_pl.models.GNNClassifier",
        "data.class_path": "streamguard_pl.data.GraphDataModule",
        "data.init_args.batch_size": 64,
        "trainer.max_epochs": 15,
        "model.init_args.weight_decay": 1e-4,
        "model.init_args.loss": "focal",
        "model.init_args.focal_gamma": 1.5,
    },
    "fusion.yaml": {
        "model.class_path": "streamguard_pl.models.FusionClassifier",
        "data.class_path": "streamguard_pl.data.FusionDataModule",
        "data.init_args.batch_size": 32,
        "trainer.accumulate_grad_batches": 2,
        "trainer.max_epochs": 12,
        "model.init_args.lr": 1e-5,
    },
}


def _id(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


def _get(cfg: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        cfg = cfg[key]
    return cfg


@pytest.fixture(scope="module")
def parser() -> Any:
    """The CLI's own parser (built once from the tiny GNN test config)."""
    return build_cli(["--config", str(REPO / "tests" / "conf" / "gnn.yaml")]).parser


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny RoBERTa and its tokenizer in one `save_pretrained` folder: a stand-in for a hub id."""
    from transformers import AutoConfig, AutoModel

    from streamguard_pl.data.synthetic import generate_records
    from streamguard_pl.data.tokens import train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tiny_pretrained")
    tok = train_bpe_tokenizer([r["func"] for r in generate_records(60)], out, vocab_size=300)
    cfg = dict(TINY_ROBERTA)
    config = AutoConfig.for_model(cfg.pop("model_type"), vocab_size=len(tok), pad_token_id=tok.pad_token_id, **cfg)
    AutoModel.from_config(config).save_pretrained(out)
    return out


def _is_hub_id(value: Any) -> bool:
    return isinstance(value, str) and not (REPO / value).exists() and not Path(value).exists()


def _local_overrides(cfg: Any, tiny: Path, out: Path) -> list[str]:
    """Redirect outputs to `out`, hub ids to the tiny folder and absent part checkpoints to it too."""
    args = ["--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir", str(out)]
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    if _is_hub_id(model.get("model_name_or_path")):
        args += ["--model.init_args.model_name_or_path", str(tiny)]
    if _is_hub_id(data.get("tokenizer_name_or_path")):
        args += ["--data.init_args.tokenizer_name_or_path", str(tiny)]
    if model.get("transformer_ckpt") and not Path(model["transformer_ckpt"]).is_file():
        args += ["--model.init_args.transformer_ckpt", "null",
                 "--model.init_args.transformer", json.dumps({"model_name_or_path": str(tiny)})]
    if model.get("gnn_ckpt") and not Path(model["gnn_ckpt"]).is_file():
        args += ["--model.init_args.gnn_ckpt", "null"]
    return args


def test_configs_are_found() -> None:
    names = {_id(p) for p in CONFIGS}
    assert {"transformer.yaml", "gnn.yaml", "fusion.yaml"} <= names
    assert {"demo/transformer.yaml", "demo/gnn.yaml", "demo/fusion.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_parses_and_instantiates(path: Path, parser: Any, tiny_pretrained: Path, tmp_path: Path) -> None:
    cfg = parser.parse_args(["--config", str(path)])
    for key, value in EXPECTED.get(_id(path), {}).items():
        assert _get(cfg, key) == value, f"{_id(path)}: {key}"
    assert cfg["trainer"]["precision"] == "auto"
    assert cfg["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger"

    cli = build_cli(["--config", str(path), *_local_overrides(cfg, tiny_pretrained, tmp_path)])
    trainer, model, dm = cli.trainer, cli.model, cli.datamodule
    assert type(model).__name__ == cfg["model"]["class_path"].rsplit(".", 1)[1]
    assert type(dm).__name__ == cfg["data"]["class_path"].rsplit(".", 1)[1]
    assert dm.batch_size == cfg["data"]["init_args"]["batch_size"]
    assert model.hparams.lr == cfg["model"]["init_args"]["lr"]
    assert trainer.max_epochs == cfg["trainer"]["max_epochs"]
    assert trainer.accumulate_grad_batches == cfg["trainer"]["accumulate_grad_batches"]
    # precision: auto resolves by hardware (32-true on a CPU-only machine) and is recorded.
    assert trainer.hardware_choices["precision_requested"] == "auto"
    assert trainer.precision == trainer.hardware_choices["precision"]
    assert isinstance(trainer.logger, TensorBoardLogger) and Path(trainer.logger.save_dir) == tmp_path
    ckpts = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
    stops = [cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)]
    # Devign selects on accuracy (its published anchors are accuracies), its GNNs on AUROC (they decide at a
    # val-tuned cut, not at 0.5); everything else on F1.
    monitor = MONITOR.get(_id(path), "val/accuracy" if _id(path).startswith("devign/") else "val/f1")
    # best.ckpt on the monitor; last.ckpt the newest epoch (Lightning 2.6's save_last follows the best only)
    assert [(c.monitor, c.mode, c.filename, c.save_top_k, bool(c.save_last)) for c in ckpts] == [
        (monitor, "max", "best", 1, False), (None, "min", "last", 1, False)]
    assert trainer.checkpoint_callback is ckpts[0]  # what study and `test` take as the run's best
    assert [(s.monitor, s.mode) for s in stops] == [(monitor, "max")]
    assert any(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks)
    assert OUR_CALLBACKS <= {type(cb) for cb in trainer.callbacks}
    expected_ema = [EMA_DECAY[_id(path)]] if _id(path) in EMA_DECAY else []
    assert [cb.decay for cb in trainer.callbacks if isinstance(cb, EMAWeights)] == expected_ema


GRAPH_SETTINGS = ("edge_types", "reverse_edges", "max_nodes", "token_buckets", "lang", "subtokens", "min_token_count")
#: The fusion trains its own BPE on the same train split: it equals the transformer part's only with these equal.
TOKEN_SETTINGS = ("tokenizer_name_or_path", "bpe_vocab_size", "max_length", "truncation", "whitespace")


@pytest.mark.parametrize("folder", sorted({p.parent for p in CONFIGS if (p.parent / "fusion.yaml").is_file()
                                           and (p.parent / "gnn.yaml").is_file()}), ids=lambda p: p.name)
@pytest.mark.parametrize(("part", "settings"), [("gnn", GRAPH_SETTINGS), ("transformer", TOKEN_SETTINGS)])
def test_fusion_builds_the_features_its_parts_were_trained_on(folder: Path, part: str, settings: tuple[str, ...],
                                                             parser: Any) -> None:
    """A fusion loads the parts' checkpoints: other feature settings would feed them inputs they never saw."""
    trained = parser.parse_args(["--config", str(folder / f"{part}.yaml")])["data"]["init_args"]
    fusion = parser.parse_args(["--config", str(folder / "fusion.yaml")])["data"]["init_args"]
    assert {k: fusion[k] for k in settings} == {k: trained[k] for k in settings}


def test_full_size_values_reach_the_objects(parser: Any, tiny_pretrained: Path, tmp_path: Path) -> None:
    """The promised values are what the instantiated model/datamodule/trainer actually use."""
    built = {}
    for name in ("transformer.yaml", "gnn.yaml", "fusion.yaml"):
        path = REPO / "configs" / name
        cfg = parser.parse_args(["--config", str(path)])
        built[name] = build_cli(["--config", str(path), *_local_overrides(cfg, tiny_pretrained, tmp_path / name)])
    t = built["transformer.yaml"]
    assert t.datamodule.token_features.max_length == 512 and t.datamodule.batch_size == 64
    assert t.model.hparams.warmup_ratio == 0.1 and t.model.hparams.weight_decay == 0.01
    assert t.trainer.max_epochs == 10
    g = built["gnn.yaml"]
    assert g.model.criterion.gamma == 1.5 and g.model.hparams.weight_decay == 1e-4
    assert g.datamodule.batch_size == 64 and g.trainer.max_epochs == 15
    f = built["fusion.yaml"]
    assert f.datamodule.batch_size == 32 and f.trainer.accumulate_grad_batches == 2
    assert f.trainer.max_epochs == 12 and f.model.lr == 1e-5
    groups = {g["name"]: g["lr"] for g in f.model._optimizer_groups()}
    assert groups["transformer"] == pytest.approx(1e-6) and groups["gnn"] == pytest.approx(5e-6)
    assert groups["head"] == pytest.approx(1e-5)


@pytest.mark.parametrize("path", DEMO, ids=_id)
def test_demo_config_fast_dev_run(path: Path, tmp_path: Path) -> None:
    rc = main(["fit", "--config", str(path), "--trainer.fast_dev_run", "true",
               "--data.init_args.synthetic_size", "240", "--trainer.default_root_dir", str(tmp_path),
               "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false"])
    assert rc == 0
    meta = json.loads((tmp_path / "training_metadata.json").read_text())
    assert meta["status"] == "completed"
    assert meta["global_step"] == 1  # fast_dev_run: exactly one optimizer step
    assert meta["data"]["split_sizes"] == {"train": 192, "val": 24, "test": 24}
    assert meta["hardware_choices"]["precision_requested"] == "auto"
