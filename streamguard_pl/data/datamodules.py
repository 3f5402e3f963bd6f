"""The CodeDataModule family: one way to find, validate and split records; three ways to batch them.

CodeDataModule reads JSON Lines (or, with no `data_dir`, generates the embedded synthetic corpus),
validates and de-duplicates records, and splits them (given files, grouped/stratified fractions,
or k-fold). TokenDataModule, GraphDataModule and FusionDataModule only add features and batching.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from torch_geometric.loader import DataLoader as GraphLoader

from ..errors import InputError, InputNotFoundError, OptionError
from ..jsonsafe import atomic_write_json
from ..locations import default_cache_dir, devign_dir, juliet_dir
from . import synthetic
from .features import FusionCollator, FusionDataset, GraphFeatures, GraphListDataset, TokenFeatures, placeholder_graph
from .graphs import EDGE_TYPES, GraphConfig
from .records import (
    CodeRecord,
    ReadReport,
    check_group_field,
    group_fields,
    shared_groups,
    kfold_records,
    label_counts,
    normalize_code,
    read_records,
    records_fingerprint,
    split_records,
)
from .samplers import EpochRandomSampler, EpochWeightedSampler, training_seed
from .tokens import LengthBucketBatchSampler, load_tokenizer
from .vocab import VOCAB_FILE, TokenVocabulary

SPLITS = ("train", "val", "test")
#: `data_dir: juliet` / `data_dir: devign` read the shared copies in place (locations.py says where).
NAMED_DATASETS = {"juliet": juliet_dir, "devign": devign_dir}


def _synthetic_version() -> str:
    """Generated corpora are cached by the generator's own source, so a changed generator regenerates."""
    return hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()[:12]


class CodeDataModule(L.LightningDataModule):
    """Records and splits shared by every model.

    Args:
        data_dir: folder of JSON Lines ($VARS expanded); "juliet" / "devign" name the shared data sets
            (STREAMGUARD_JULIET_DIR / STREAMGUARD_DEVIGN_DIR); None generates the embedded synthetic corpus.
        train_files / val_files / test_files: glob patterns inside `data_dir`. A split whose pattern is
            None or matches nothing is carved out of train by `split` (grouped by `group_field`).
        group_field: the record field whose value is a group that a carved split or fold never cuts (a
            commit, a test case); a list of fields takes each record's first non-empty one (Devign:
            `[commit_id, commit_id_guess]`). A record with none is a group of its own (warned).
        num_folds / fold: stratified (grouped) k-fold over train+val instead of the fixed validation split.
        synthetic_size / synthetic_seed / synthetic_difficulty: the embedded corpus when `data_dir` is None
            ("easy": what demo-size models learn in a CPU minute; "hard": statement order and data flow only).
        seed: carves the splits and folds and caps `max_records`. The training order follows
            `seed_everything` (each epoch its own, a resumed run the uninterrupted one's), `seed` only
            where nothing set a global seed: a study's seeds differ in their batches too.
        max_records: cap per split (seeded, label-stratified sample) for quick runs.
        balanced_sampler: class-balanced draws with replacement for training (per epoch, seeded).
        on_error: "raise" on the first bad record, or "skip" it (counted in `data_summary()`).
    """

    model_type = "base"

    def __init__(
        self,
        data_dir: str | None = None,
        train_files: str = "train*.jsonl",
        val_files: str | None = "valid*.jsonl",
        test_files: str | None = "test*.jsonl",
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        group_field: str | list[str] | None = None,
        num_folds: int | None = None,
        fold: int = 0,
        seed: int = 42,
        synthetic_size: int = 2000,
        synthetic_seed: int = 0,
        synthetic_difficulty: Literal["easy", "hard"] = "easy",
        max_records: int | None = None,
        batch_size: int | str = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        balanced_sampler: bool = False,
        on_error: Literal["raise", "skip"] = "raise",
        dedupe: bool = True,
        cache_dir: str | None = None,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if num_folds is not None and (num_folds < 2 or not 0 <= fold < num_folds):
            raise ValueError(f"num_folds must be >= 2 and fold in [0, num_folds); got num_folds={num_folds}, fold={fold}")
        if num_folds is None and fold:
            raise ValueError(f"fold={fold} picks a fold of k-fold cross-validation: set num_folds too")
        if len(split) != 3 or any(f < 0 for f in split) or abs(sum(split) - 1.0) > 1e-6:
            raise OptionError(f"data.split must be 3 non-negative fractions (train, val, test) summing to 1, "
                              f"got {list(split)}")
        if group_field is not None:
            group_fields(group_field)  # a bad value fails here, not after reading the data
        if isinstance(batch_size, str):
            from ..hardware import resolve_batch_size

            batch_size = resolve_batch_size(batch_size, self.model_type)
            rank_zero_info(f"batch_size: auto -> {batch_size} for {self.model_type}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or self.batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.records: dict[str, list[CodeRecord]] = {}
        self.reports: dict[str, ReadReport] = {}
        self.cross_split_duplicates = 0
        self.datasets: dict[str, Dataset] = {}
        self._predict_records: list[CodeRecord] | None = None
        #: run folder whose saved features validate / test / predict take before fitting any; the
        #: `streamguard` command sets it to the folder of `--ckpt_path` (`<run>/checkpoints/x.ckpt`)
        self.features_dir: Path | None = None

    # ---- records --------------------------------------------------------------------------
    @property
    def source_dir(self) -> Path:
        if self.hparams.data_dir is not None:
            path = Path(os.path.expandvars(self.hparams.data_dir)).expanduser()
            if not path.exists() and str(self.hparams.data_dir) in NAMED_DATASETS:
                return NAMED_DATASETS[str(self.hparams.data_dir)]()
            return path
        n, seed, level = self.hparams.synthetic_size, self.hparams.synthetic_seed, self.hparams.synthetic_difficulty
        return self.cache_dir / "synthetic" / f"n{n}-seed{seed}-{level}-{_synthetic_version()}"

    def prepare_data(self) -> None:
        """Once per node before setup: write what every rank then only reads (corpus, tokenizer).

        A saved run's features (its tokenizer, its token vocabulary) need no training data: scoring
        files with `streamguard predict` works where the training set is not. Validate, test and
        predict read the features in `features_dir` (the checkpoint's run folder) before fitting any:
        refitting on other data wrote over the tokenizer and vocabulary the checkpoint was trained with.
        """
        self._ensure_corpus()
        self._load_checkpoint_features()
        if not self.features_ready():
            self.fit_features(self._train_records_for_features())

    def _scoring_only(self) -> bool:
        return self.trainer is not None and self.trainer.state.fn in (
            TrainerFn.VALIDATING, TrainerFn.TESTING, TrainerFn.PREDICTING)

    def _load_checkpoint_features(self) -> None:
        if self.features_dir is not None and self._scoring_only() and not self.features_ready():
            self.load_saved_features(self.features_dir)

    def load_saved_features(self, run_dir: Path) -> None:
        """Take the features a run folder holds (a trained tokenizer, a fitted vocabulary) where they apply."""

    def _features_dir_to_write(self) -> Path:
        """Where fitted features are saved: the run folder when fitting; a scratch folder when scoring,
        which must never write over the features a run's checkpoints were trained with (a checkpoint
        copied out of its run folder, tested with the run's config, once refitted the run's tokenizer)."""
        if self._scoring_only():
            return Path(tempfile.mkdtemp(prefix="streamguard-scoring-features-"))
        return self.output_dir

    def _train_records_for_features(self) -> list[CodeRecord]:
        try:
            return self.load_records()["train"]
        except FileNotFoundError as exc:
            raise InputNotFoundError(
                f"{exc}: the features (tokenizer, token vocabulary) are fitted on the training data unless the "
                f"run folder holds them (tokenizer/, {VOCAB_FILE})") from exc

    def _ensure_corpus(self) -> None:
        """Generate the embedded corpus when no data_dir is given; real data is read in place."""
        # summary.json is written last: a run killed while writing the corpus left train.jsonl alone,
        # and val and test carved out of it would have split vulnerable/fixed twins.
        if self.hparams.data_dir is None and not (self.source_dir / "summary.json").exists():
            synthetic.write_synthetic_corpus(self.source_dir, self.hparams.synthetic_size, self.hparams.synthetic_seed,
                                             difficulty=self.hparams.synthetic_difficulty)

    def _files(self, pattern: str | None) -> list[str]:
        if pattern is None:
            return []
        # The folder is escaped: `data/run [v2]` is a folder name, not a character class.
        return sorted(glob.glob(os.path.join(glob.escape(str(self.source_dir)), pattern)))

    def load_records(self) -> dict[str, list[CodeRecord]]:
        """Read, validate, de-duplicate and split; idempotent."""
        if self.records:
            return self.records
        self._ensure_corpus()
        hp = self.hparams
        train_files = self._files(hp.train_files)
        if not train_files:
            if not self.source_dir.is_dir():
                raise InputNotFoundError(f"data folder not found: {self.source_dir} (data.data_dir={hp.data_dir!r})")
            raise InputNotFoundError(f"no training files match {self.source_dir / hp.train_files}{self._named_hint()}")
        found: dict[str, list[CodeRecord]] = {}
        read_by: dict[str, str] = {}
        for name, pattern in (("train", hp.train_files), ("val", hp.val_files), ("test", hp.test_files)):
            files = self._files(pattern)
            for file in files:
                other = read_by.setdefault(file, name)
                if other != name:
                    raise OptionError(f"{file} matches both data.{other}_files ({hp[f'{other}_files']!r}) and "
                                      f"data.{name}_files ({pattern!r}): its functions would be trained on and "
                                      f"scored; narrow the patterns")
            if files:
                found[name], self.reports[name] = read_records(files, on_error=hp.on_error, dedupe=hp.dedupe)
                rank_zero_info(f"[data] {name}: {self.reports[name].summary()}")
        found = self._drop_cross_split_duplicates(found)
        found = self._carve_missing_splits(found)
        if hp.group_field is not None and not hp.num_folds:
            self._check_given_groups(found)
        if hp.num_folds:
            pool = found["train"] + self._ids_apart(found.get("val", []), found["train"])
            folds = kfold_records(pool, k=hp.num_folds, group_field=hp.group_field, seed=hp.seed)
            found["train"], found["val"] = folds[hp.fold]
        if hp.max_records:
            found = {k: self._cap(v, hp.max_records) for k, v in found.items()}
        self.records = found
        return found

    def _named_hint(self) -> str:
        data_dir = str(self.hparams.data_dir)
        if data_dir in NAMED_DATASETS and self.source_dir != NAMED_DATASETS[data_dir]():
            return (f" (the folder {data_dir!r} here is read, not the shared {data_dir} data set at "
                    f"{NAMED_DATASETS[data_dir]()}; give that path, or run from another folder)")
        return ""

    def _drop_cross_split_duplicates(self, found: dict[str, list[CodeRecord]]) -> dict[str, list[CodeRecord]]:
        """A function in train must not be scored again in val/test, nor one of val in test: dropped and
        counted (with `dedupe: false`, kept and counted: the leak is named either way)."""
        if "train" not in found:
            return found
        earlier = [("train", {normalize_code(r.func) for r in found["train"]})]
        for name in ("val", "test"):
            if name not in found:
                continue
            kept, hits = [], {other: 0 for other, _ in earlier}
            for r in found[name]:
                key = normalize_code(r.func)
                where = next((other for other, keys in earlier if key in keys), None)
                if where is None:
                    kept.append(r)
                else:
                    hits[where] += 1
            found_dups = len(found[name]) - len(kept)
            if found_dups:
                places = " or ".join(f"{other} ({n})" for other, n in hits.items() if n)
                action = "dropped" if self.hparams.dedupe else "kept (dedupe: false)"
                rank_zero_warn(f"[data] {action} {found_dups} {name} records whose text also appears in {places}")
            self.cross_split_duplicates += found_dups
            if self.hparams.dedupe:
                found[name] = kept
            earlier.append((name, {normalize_code(r.func) for r in found[name]}))
        return found

    def _check_given_groups(self, found: dict[str, list[CodeRecord]]) -> None:
        """Split files given as they are cannot be grouped by us: a group in two of them is named."""
        gf = self.hparams.group_field
        if all(s in self.reports for s in SPLITS):  # else carving checked the field already
            check_group_field([r for recs in found.values() for r in recs], gf)
        for name in ("val", "test"):
            groups, records = shared_groups(found["train"], found.get(name, []), gf)
            if records:
                rank_zero_warn(f"[data] {groups} {gf!r} groups of train are also in {name} ({records} {name} records): "
                               f"the given split files are not grouped by {gf!r}")

    def _ids_apart(self, records: list[CodeRecord], others: list[CodeRecord]) -> list[CodeRecord]:
        """Split files number their ids each on their own; pooled for k-fold, a repeated id would join a
        record to another's graph or tokens. Val's ids become `val:<id>` when any repeats train's."""
        taken = {r.id for r in others}
        if not any(r.id in taken for r in records):
            return records
        renamed = [dataclasses.replace(r, id=f"val:{r.id}") for r in records]
        if any(r.id in taken for r in renamed):
            raise InputError(f"k-fold pools train and val, whose record ids repeat even as val:<id>: give unique ids")
        rank_zero_info("[data] k-fold: val ids that train also uses are read as val:<id>")
        return renamed

    def _carve_missing_splits(self, found: dict[str, list[CodeRecord]]) -> dict[str, list[CodeRecord]]:
        missing = [s for s in ("val", "test") if s not in found]
        if not missing:
            return found
        fr = dict(zip(SPLITS, self.hparams.split))
        fractions = (fr["train"] + sum(fr[s] for s in ("val", "test") if s not in missing),
                     fr["val"] if "val" in missing else 0.0, fr["test"] if "test" in missing else 0.0)
        parts = split_records(found["train"], fractions, group_field=self.hparams.group_field, seed=self.hparams.seed)
        found["train"] = parts["train"]
        for s in missing:
            found[s] = parts[s]
        sizes = ", ".join(f"{s} {len(parts[s])}" for s in ("train", *missing))
        rank_zero_info(f"[data] carved {', '.join(missing)} out of train (fractions {self.hparams.split}): {sizes}")
        for s in missing:
            if fr[s] > 0 and 0 in label_counts(parts[s]).values():
                counts = label_counts(parts[s])
                grouped = f" grouped by {self.hparams.group_field!r}" if self.hparams.group_field else ""
                rank_zero_warn(f"[data] the carved {s} split has {counts[0]} label-0 and {counts[1]} label-1 records "
                               f"({len(parts['train'])} left in train, fractions {list(self.hparams.split)}{grouped}): "
                               f"its metrics will say little; give more records, groups or a larger fraction")
        return found

    def _cap(self, records: list[CodeRecord], n: int) -> list[CodeRecord]:
        if len(records) <= n:
            return records
        rng = random.Random(self.hparams.seed)
        by_label: dict[int, list[CodeRecord]] = {}
        for r in records:
            by_label.setdefault(r.target, []).append(r)
        # Largest remainder: the per-label shares add up to n (rounding each gave 4 of max_records 5).
        share = {label: n * len(group) / len(records) for label, group in by_label.items()}
        take = {label: max(1, int(v)) for label, v in share.items()}
        for label in sorted(share, key=lambda lb: share[lb] - int(share[lb]), reverse=True):
            if sum(take.values()) >= n:
                break
            take[label] += 1
        out: list[CodeRecord] = []
        for label, group in sorted(by_label.items()):
            out.extend(rng.sample(group, min(len(group), take[label])))
        rng.shuffle(out)
        return out[:n]

    def data_summary(self) -> dict[str, Any]:
        """What MetadataExport and the CLI record about the data of a run."""
        recs = self.load_records()
        everything = [r for s in SPLITS for r in recs.get(s, [])]
        return {
            "source": "synthetic" if self.hparams.data_dir is None else str(self.source_dir),
            "fingerprint": records_fingerprint(everything),
            "split_sizes": {s: len(recs.get(s, [])) for s in SPLITS},
            "label_counts": {s: label_counts(recs.get(s, [])) for s in SPLITS},
            "read_reports": {k: v.to_dict() for k, v in self.reports.items()},
            "cross_split_duplicates": self.cross_split_duplicates,
        }

    def set_predict_records(self, records: Sequence[CodeRecord]) -> None:
        """Records to score with `trainer.predict` (e.g. functions split out of C files)."""
        self._predict_records = list(records)
        self.datasets.pop("predict", None)

    def predict_outcomes(self) -> tuple[dict[str, str], set[str]]:
        """After `trainer.predict`: why records got no features (reason by id), and the ids whose features
        were cut to the model's limit (tokens, nodes); `streamguard predict` reports both per row."""
        return {}, set()

    # ---- features and loaders ----------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        if self.trainer is not None:
            return Path(self.trainer.default_root_dir)
        return self.cache_dir / "run"

    def fit_features(self, train_records: list[CodeRecord]) -> None:
        """Fit split-dependent feature state (the tokenizer) on train only."""

    def build_dataset(self, records: list[CodeRecord], split: str) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_build(self) -> None:
        """Hook after datasets exist (graph statistics)."""

    def features_ready(self) -> bool:
        """Whether split-dependent feature state exists (predict then needs no training records)."""
        return True

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if self._predict_records is None:
                raise RuntimeError("call set_predict_records(records) before trainer.predict")
            self._load_checkpoint_features()
            if not self.features_ready():
                self.fit_features(self._train_records_for_features())
            self.datasets["predict"] = self.build_dataset(self._predict_records, "predict")
            return
        recs = self.load_records()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", SPLITS)
        for split in wanted:
            if not recs.get(split) and stage is not None and self._split_expected(split):
                raise InputError(f"the {split} split is empty ({self._split_origin(split)}): "
                                 f"nothing to {'train on' if split == 'train' else 'score'}")
        self._load_checkpoint_features()
        self.fit_features(recs["train"])
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(recs.get(split, []), split)
        self.after_build()

    def _split_expected(self, split: str) -> bool:
        """False where no records were asked for: a carved split of fraction 0, validation turned off."""
        if split == "val" and self.trainer is not None and not self.trainer.limit_val_batches:
            return False
        return split in self.reports or dict(zip(SPLITS, self.hparams.split))[split] > 0

    def _split_origin(self, split: str) -> str:
        report = self.reports.get(split)
        if report is not None:
            return f"data.{split}_files {self.hparams[f'{split}_files']!r}: {report.summary()}"
        return f"carved out of train by data.split {list(self.hparams.split)}"

    @property
    def sampler_seed(self) -> int:
        return training_seed(self.hparams.seed)

    def _balanced_sampler(self, labels: Sequence[int]) -> EpochWeightedSampler:
        raw = torch.bincount(torch.tensor(list(labels), dtype=torch.long), minlength=2)
        if (raw == 0).any():
            rank_zero_warn(f"[data] balanced_sampler: the train split has no label-{int((raw == 0).nonzero()[0])} "
                           f"records, so there is nothing to balance ({raw.tolist()} per label)")
        counts = raw.clamp(min=1).float()
        weights = (1.0 / counts)[torch.tensor(list(labels), dtype=torch.long)]
        return EpochWeightedSampler(weights.double(), len(labels), self.sampler_seed)

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.hparams.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0}

    def make_loader(self, split: str, train: bool) -> DataLoader:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self.make_loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.make_loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.make_loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self.make_loader("predict", train=False)


class GraphDataModule(CodeDataModule):
    """Tree-sitter graphs batched by PyG; writes `graph_statistics.json` into the run folder.

    `token_buckets` and the edge settings must match the GNN's (`num_edge_types` >= `len(edge_types)`,
    doubled with `reverse_edges`); the model checks this at setup. `subtokens=k` adds the hashed
    sub-words of each identifier (up to k) to its node features; the GNN needs no setting for it.
    `min_token_count=k` gives each token text in >= k train graphs its own id (the `token_buckets - 2`
    most frequent at most) and rarer ones the unknown id, instead of hashing every text into a
    bucket; the vocabulary is fitted on train and saved as `<run>/token_vocab.json` for predict.
    """

    model_type = "gnn"

    def __init__(
        self,
        edge_types: list[str] = list(EDGE_TYPES),
        reverse_edges: bool = False,
        max_nodes: int | None = 1000,
        token_buckets: int = 50_000,
        lang: Literal["auto", "c", "cpp"] = "auto",
        subtokens: int = 0,
        min_token_count: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.graph_config = GraphConfig(tuple(edge_types), reverse_edges, max_nodes, token_buckets, lang, subtokens)
        self.graph_features = GraphFeatures(self.graph_config, self.cache_dir / "graphs", self.hparams.on_error,
                                            min_token_count)
        self.missing_graphs: dict[str, int] = {}

    @property
    def token_buckets(self) -> int:
        return self.graph_config.token_buckets

    @property
    def num_edge_types(self) -> int:
        return self.graph_config.num_edge_types

    @property
    def min_token_count(self) -> int:
        return self.graph_features.min_token_count

    def features_ready(self) -> bool:
        return not self.graph_features.needs_vocab

    def fit_features(self, train_records: list[CodeRecord]) -> None:
        if self.graph_features.needs_vocab:
            self.datasets["train"] = self.build_dataset(train_records, "train")

    def load_saved_features(self, run_dir: Path) -> None:
        if self.graph_features.needs_vocab and (run_dir / VOCAB_FILE).is_file():
            self.graph_features.vocab = TokenVocabulary.load(run_dir / VOCAB_FILE)

    def build_dataset(self, records: list[CodeRecord], split: str) -> Dataset:
        graphs = self.graph_features.build(records, split)
        self.missing_graphs[split] = len(records) - len(graphs)
        if self.missing_graphs[split]:
            first = self.graph_features.stats[split].failed[0]
            rank_zero_warn(f"[data] {split}: {self.missing_graphs[split]} of {len(records)} records have no graph and "
                           f"are left out (on_error: skip); first: {first['source'] or first['id']}: {first['reason']}")
        return GraphListDataset(graphs)

    def data_summary(self) -> dict[str, Any]:
        return {**super().data_summary(), "missing_graphs": dict(self.missing_graphs)}

    def predict_outcomes(self) -> tuple[dict[str, str], set[str]]:
        return self.graph_features.outcomes("predict")

    def after_build(self) -> None:
        if not self._scoring_only():  # a test on other data must not replace the run's train statistics
            write_graph_artifacts(self, self.graph_features)

    def make_loader(self, split: str, train: bool) -> GraphLoader:
        ds = self.datasets[split]
        bs = self.batch_size if train else self.eval_batch_size
        if train and self.hparams.balanced_sampler:
            return GraphLoader(ds, batch_size=bs, sampler=self._balanced_sampler(ds.labels), **self._loader_kwargs())
        sampler = EpochRandomSampler(ds, self.sampler_seed) if train else None
        return GraphLoader(ds, batch_size=bs, sampler=sampler, **self._loader_kwargs())


@rank_zero_only
def write_graph_artifacts(dm: CodeDataModule, features: GraphFeatures) -> None:
    """`graph_statistics.json`, and the fitted token vocabulary that test and predict reuse."""
    stats = features.statistics()
    if stats:
        atomic_write_json(dm.output_dir / "graph_statistics.json", stats)
    if features.vocab is not None:
        features.vocab.save(dm.output_dir / VOCAB_FILE)


class TokenDataModule(CodeDataModule):
    """Token ids with dynamic padding and length-bucketed batches (also under the balanced sampler).

    `tokenizer_name_or_path` loads a hub/local tokenizer; None trains a byte-level BPE of
    `bpe_vocab_size` on the train split and saves it in `<run>/tokenizer` for test and predict.
    `fixed_padding` pads every batch to `max_length` (the CodeXGLUE script's way; for benchmarks).
    `whitespace="collapse"` tokenizes the code with every whitespace run as one space (no formatting).
    """

    model_type = "transformer"

    def __init__(
        self,
        tokenizer_name_or_path: str | None = None,
        bpe_vocab_size: int = 8000,
        max_length: int = 512,
        truncation: Literal["head", "head_tail"] = "head",
        bucketing: bool = True,
        pad_to_multiple_of: int | None = 8,
        fixed_padding: bool = False,
        whitespace: Literal["keep", "collapse"] = "keep",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.token_features = TokenFeatures(tokenizer_name_or_path, bpe_vocab_size, max_length, truncation,
                                            self.cache_dir / "tokens", whitespace=whitespace)

    @property
    def tokenizer(self) -> Any:
        return self.token_features.tokenizer

    def features_ready(self) -> bool:
        return self.token_features.tokenizer is not None

    def fit_features(self, train_records: list[CodeRecord]) -> None:
        if self.token_features.tokenizer is None:
            self.token_features.fit_tokenizer(train_records, self._features_dir_to_write() / "tokenizer")

    def load_saved_features(self, run_dir: Path) -> None:
        features = self.token_features
        if features.tokenizer is not None:
            return
        if features.tokenizer_name_or_path is not None:  # a named tokenizer needs no training records
            features.tokenizer = load_tokenizer(features.tokenizer_name_or_path)
        elif (run_dir / "tokenizer").is_dir():
            features.tokenizer = load_tokenizer(str(run_dir / "tokenizer"))

    def build_dataset(self, records: list[CodeRecord], split: str) -> Dataset:
        return self.token_features.build(records, split)

    def predict_outcomes(self) -> tuple[dict[str, str], set[str]]:
        return {}, self.token_features.overlong(self._predict_records or [])

    def _collate(self) -> Any:
        return self.token_features.collator(self.hparams.pad_to_multiple_of, self.hparams.fixed_padding)

    def make_loader(self, split: str, train: bool) -> DataLoader:
        ds = self.datasets[split]
        return token_loader(self, ds, train, self._collate())


def token_loader(dm: CodeDataModule, ds: Any, train: bool, collate: Any) -> DataLoader:
    """Bucketed (or plain) batches over a dataset that exposes `lengths` and `labels`."""
    bs = dm.batch_size if train else dm.eval_batch_size
    sampler = dm._balanced_sampler(ds.labels) if train and dm.hparams.balanced_sampler else None
    if dm.hparams.bucketing:
        if train and dm.trainer is not None and dm.trainer.overfit_batches:
            # overfit_batches wants the same batches every epoch; Lightning cannot reach a batch
            # sampler's to make it so. A fixed permutation (no set_epoch) keeps epoch 0's batches.
            sampler = torch.randperm(len(ds), generator=torch.Generator().manual_seed(dm.sampler_seed)).tolist()
        batches = LengthBucketBatchSampler(ds.lengths, bs, shuffle=train, seed=dm.sampler_seed, sampler=sampler)
        return DataLoader(ds, batch_sampler=batches, collate_fn=collate, **dm._loader_kwargs())
    if train and sampler is None:
        sampler = EpochRandomSampler(ds, dm.sampler_seed)
    return DataLoader(ds, batch_size=bs, sampler=sampler, collate_fn=collate, **dm._loader_kwargs())


class FusionDataModule(TokenDataModule):
    """Tokens and graph of the same record in every batch, reusing both caches.

    `missing_graph`: what to do with a record whose graph could not be built (with `on_error: skip`):
    "drop" it from the split, or give it a one-node "placeholder" graph. Either is counted.
    """

    model_type = "fusion"

    def __init__(
        self,
        edge_types: list[str] = list(EDGE_TYPES),
        reverse_edges: bool = False,
        max_nodes: int | None = 1000,
        token_buckets: int = 50_000,
        lang: Literal["auto", "c", "cpp"] = "auto",
        subtokens: int = 0,
        min_token_count: int = 0,
        missing_graph: Literal["drop", "placeholder"] = "drop",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.graph_config = GraphConfig(tuple(edge_types), reverse_edges, max_nodes, token_buckets, lang, subtokens)
        self.graph_features = GraphFeatures(self.graph_config, self.cache_dir / "graphs", self.hparams.on_error,
                                            min_token_count)
        self.missing_graphs: dict[str, int] = {}

    token_buckets = GraphDataModule.token_buckets
    num_edge_types = GraphDataModule.num_edge_types
    min_token_count = GraphDataModule.min_token_count

    def features_ready(self) -> bool:
        return super().features_ready() and GraphDataModule.features_ready(self)

    def fit_features(self, train_records: list[CodeRecord]) -> None:
        super().fit_features(train_records)  # the tokenizer first: the train dataset holds tokens too
        GraphDataModule.fit_features(self, train_records)

    def load_saved_features(self, run_dir: Path) -> None:
        super().load_saved_features(run_dir)
        GraphDataModule.load_saved_features(self, run_dir)

    def build_dataset(self, records: list[CodeRecord], split: str) -> Dataset:
        tokens = self.token_features.build(records, split)
        by_index = {int(g.idx): g for g in self.graph_features.build(records, split)}
        positions = []
        for pos, rec in enumerate(records):
            if pos not in by_index and self.hparams.missing_graph == "placeholder":
                by_index[pos] = placeholder_graph(rec.target, pos, rec.id, 2 + self.graph_config.subtokens)
            if pos in by_index:
                positions.append(pos)
        self.missing_graphs[split] = len(records) - len(self.graph_features.graphs[split])
        if self.missing_graphs[split]:
            rank_zero_warn(
                f"[data] {split}: {self.missing_graphs[split]} records have no graph "
                f"(missing_graph={self.hparams.missing_graph})"
            )
        return FusionDataset(tokens, by_index, positions)

    def after_build(self) -> None:
        if not self._scoring_only():  # a test on other data must not replace the run's train statistics
            write_graph_artifacts(self, self.graph_features)

    def data_summary(self) -> dict[str, Any]:
        return {**super().data_summary(), "missing_graphs": dict(self.missing_graphs),
                "missing_graph_policy": self.hparams.missing_graph}

    def predict_outcomes(self) -> tuple[dict[str, str], set[str]]:
        failed, cut = self.graph_features.outcomes("predict")
        return failed, cut | super().predict_outcomes()[1]

    def make_loader(self, split: str, train: bool) -> DataLoader:
        return token_loader(self, self.datasets[split], train, FusionCollator(self._collate()))
