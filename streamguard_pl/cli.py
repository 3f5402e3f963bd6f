"""`streamguard` command line: LightningCLI for fit/validate/test, plus data, predict, study, report, demo."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from .data.datamodules import CodeDataModule
from .data.vocab import VOCAB_FILE
from .data.records import RecordError
from .errors import InputError
from .models.base import VulnerabilityClassifier
from .trainer import StreamGuardTrainer

LIGHTNING_COMMANDS = ("fit", "validate", "test")
USAGE = """usage: streamguard <command> [options]

commands:
  fit | validate | test   LightningCLI: --config configs/<model>.yaml (see --help of each)
  predict                 score C/C++ files, folders or JSON Lines with a checkpoint
  study                   several models x seeds -> outputs/production_summary.json + report + plots
  report                  rebuild the study report from an outputs folder
  data synth              write the embedded synthetic corpus (train/valid/test JSON Lines)
  demo                    the README's main job: a demo-size study on the embedded corpus
"""


class FitConfigCallback(SaveConfigCallback):
    """`config.yaml` records how the run was trained: `test` on other data must not rewrite it, since
    `streamguard predict` and later tests rebuild the run's data module from it."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class StreamGuardCLI(LightningCLI):
    """Subclass mode for models and datamodules (any VulnerabilityClassifier / CodeDataModule)."""

    def before_fit(self) -> None:
        self.share_config(self.subcommand)

    def before_validate(self) -> None:
        self.share_config(self.subcommand)
        self.features_beside_checkpoint(self.subcommand)

    def before_test(self) -> None:
        self.share_config(self.subcommand)
        self.features_beside_checkpoint(self.subcommand)

    def features_beside_checkpoint(self, subcommand: str | None) -> None:
        """Score with the tokenizer / vocabulary saved in the checkpoint's run folder, whatever the data."""
        cfg = self.config.get(subcommand) if subcommand and subcommand in self.config else self.config
        ckpt = cfg.get("ckpt_path")
        if ckpt and Path(ckpt).is_file() and self.datamodule is not None:
            self.datamodule.features_dir = features_folder(Path(ckpt))


    def share_config(self, subcommand: str | None) -> None:
        """Hand the resolved config to the callbacks that record it (MetadataExport)."""
        cfg = self.config.get(subcommand) if subcommand and subcommand in self.config else self.config
        resolved: dict[str, Any] = cfg.as_dict() if hasattr(cfg, "as_dict") else dict(cfg)
        resolved["hardware_choices"] = getattr(self.trainer, "hardware_choices", {})
        for cb in self.trainer.callbacks:
            if hasattr(cb, "config") and getattr(cb, "config", None) is None:
                cb.config = resolved



def features_folder(ckpt: Path) -> Path:
    """`<run>/checkpoints/x.ckpt` -> `<run>`; a checkpoint kept beside its features (a `tokenizer/` or
    `token_vocab.json` copied with it) -> its own folder."""
    ckpt = ckpt.resolve()
    if (ckpt.parent / "tokenizer").is_dir() or (ckpt.parent / VOCAB_FILE).is_file():
        return ckpt.parent
    return ckpt.parent.parent


def build_cli(args: list[str] | None, run: bool = False) -> StreamGuardCLI:
    """LightningCLI over every VulnerabilityClassifier / CodeDataModule subclass (torchgeo style).

    `run=False` instantiates model, datamodule and trainer from `args` for Python callers (study).
    """
    return StreamGuardCLI(
        VulnerabilityClassifier,
        CodeDataModule,
        trainer_class=StreamGuardTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=FitConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 with a one-line message for bad input (the traceback would only say where we noticed)."""
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    try:
        return _run(command, rest, from_console)
    except Exception as caught:
        err = _input_error(caught)
        if err is None:
            raise
        hint = ""
        if isinstance(err, RecordError) and err.line and command in (*LIGHTNING_COMMANDS, "study"):
            hint = "\n(--data.init_args.on_error skip skips such lines and counts them in training_metadata.json)"
        print(f"streamguard {command}: error: {err}{hint}", file=sys.stderr)
        return 2


def _input_error(err: BaseException | None) -> InputError | None:
    """The InputError behind `err`: jsonargparse wraps what a class's __init__ raises in its own error."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, InputError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _run(command: str, rest: list[str], from_console: bool) -> int:
    if command in LIGHTNING_COMMANDS:
        # From the console, LightningCLI reads sys.argv itself (giving it args too makes it warn).
        build_cli(None if from_console else [command, *rest], run=True)
        return 0
    if command == "data":
        if not rest or rest[0] != "synth":
            print("usage: streamguard data synth --n 4000 --out DIR [--seed 0]", file=sys.stderr)
            return 2
        from .data.synthetic import main as synth_main

        return synth_main(rest[1:])
    if command == "predict":
        from .predict import main as predict_main

        return predict_main(rest)
    if command in ("study", "report", "demo"):
        from . import study

        return {"study": study.main, "report": study.report_main, "demo": study.demo_main}[command](rest)
    print(f"streamguard: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
