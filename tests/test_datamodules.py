"""The CodeDataModule family on real files: splits, caps, errors, samplers, padding, graphs, fusion, predict.

Data comes from the embedded generator (`tiny_corpus`) or small JSON Lines written into tmp_path;
tokenizers are byte-level BPEs trained on the train split, graphs are real tree-sitter builds.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import lightning as L
import pytest

from _trainers import quiet_trainer
import torch
from torch_geometric.data import Batch

from streamguard_pl.data.datamodules import CodeDataModule, FusionDataModule, GraphDataModule, TokenDataModule
from streamguard_pl.data.records import CodeRecord, RecordError, write_records_jsonl
from streamguard_pl.data.synthetic import generate_records
from streamguard_pl.models import GNNClassifier

TOKENS = {"bpe_vocab_size": 400, "max_length": 128}
BUCKETS = 1024  # tests/conftest.py TINY_GNN


def write_corpus(folder: Path, n_neg: int, n_pos: int, seed: int = 1, name: str = "train.jsonl") -> list[dict]:
    """A single JSON Lines file of generated functions with exactly n_neg benign and n_pos vulnerable ones."""
    pool = generate_records(2 * max(n_neg, n_pos) + 2, seed=seed)
    neg = [r for r in pool if r["target"] == 0][:n_neg]
    pos = [r for r in pool if r["target"] == 1][:n_pos]
    recs = neg + pos
    folder.mkdir(parents=True, exist_ok=True)
    write_records_jsonl(recs, folder / name)
    return recs


def ids(records: list[CodeRecord]) -> set[str]:
    return {r.id for r in records}


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    return quiet_trainer(tmp_path, **kw)


# ---------------------------------------------------------------------------- records and splits


def test_splits_come_from_the_given_files(tiny_corpus: Path) -> None:
    dm = CodeDataModule(data_dir=str(tiny_corpus))
    recs = dm.load_records()
    lines = {s: sum(1 for _ in open(tiny_corpus / f)) for s, f in
             (("train", "train.jsonl"), ("val", "valid.jsonl"), ("test", "test.jsonl"))}
    assert {s: len(recs[s]) for s in lines} == lines
    assert all(r.source.startswith(str(tiny_corpus / "valid.jsonl")) for r in recs["val"])


def test_missing_splits_are_carved_from_train_by_group(tiny_corpus: Path) -> None:
    dm = CodeDataModule(data_dir=str(tiny_corpus), val_files=None, test_files=None,
                        split=(0.6, 0.2, 0.2), group_field="group", seed=3)
    recs = dm.load_records()
    n = sum(len(v) for v in recs.values())
    assert n == sum(1 for _ in open(tiny_corpus / "train.jsonl"))
    for s, f in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        assert abs(len(recs[s]) / n - f) < 0.03, (s, len(recs[s]))
    groups = {s: {r.meta["group"] for r in recs[s]} for s in recs}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"] and not groups["val"] & groups["test"]
    assert not ids(recs["train"]) & ids(recs["val"])


def test_only_the_missing_split_is_carved(tiny_corpus: Path) -> None:
    dm = CodeDataModule(data_dir=str(tiny_corpus), test_files=None, split=(0.8, 0.1, 0.1), group_field="group")
    recs = dm.load_records()
    assert len(recs["val"]) == sum(1 for _ in open(tiny_corpus / "valid.jsonl"))  # val file untouched
    n_train_file = sum(1 for _ in open(tiny_corpus / "train.jsonl"))
    assert len(recs["train"]) + len(recs["test"]) == n_train_file
    # test gets 0.1 of the whole, i.e. 0.1/0.9 of the train file
    assert abs(len(recs["test"]) / n_train_file - 0.1 / 0.9) < 0.03


def test_fold_settings_out_of_range_are_refused(tiny_corpus: Path) -> None:
    for bad in ({"num_folds": 3, "fold": 3}, {"num_folds": 3, "fold": -1}, {"num_folds": 1}, {"fold": 2}):
        with pytest.raises(ValueError, match="fold"):  # fold -1 used to wrap to the last fold; fold alone was ignored
            CodeDataModule(data_dir=str(tiny_corpus), **bad)


def test_kfold_val_folds_are_disjoint_and_cover_train_plus_val(tiny_corpus: Path) -> None:
    base = CodeDataModule(data_dir=str(tiny_corpus)).load_records()
    pool = ids(base["train"]) | ids(base["val"])
    vals = []
    for fold in range(3):
        recs = CodeDataModule(data_dir=str(tiny_corpus), num_folds=3, fold=fold, group_field="group").load_records()
        assert ids(recs["train"]) | ids(recs["val"]) == pool
        assert not ids(recs["train"]) & ids(recs["val"])
        assert ids(recs["test"]) == ids(base["test"])  # the test split stays out of the folds
        groups_train = {r.meta["group"] for r in recs["train"]}
        assert not groups_train & {r.meta["group"] for r in recs["val"]}
        vals.append(ids(recs["val"]))
    assert set().union(*vals) == pool and sum(len(v) for v in vals) == len(pool)
    assert all(abs(len(v) - len(pool) / 3) <= 4 for v in vals)


def test_cross_split_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    recs = write_corpus(tmp_path, 10, 10)
    train, extra = recs[:16], recs[16:]
    write_records_jsonl(train, tmp_path / "train.jsonl")
    # val: two copies of train functions (one with reflowed whitespace), two new ones
    twin = dict(train[0], id="dup-a")
    spaced = dict(train[5], id="dup-b", func="  " + train[5]["func"].replace("\n", "\n\n "))
    write_records_jsonl([twin, spaced, *extra[:2]], tmp_path / "valid.jsonl")
    write_records_jsonl(extra[2:], tmp_path / "test.jsonl")
    dm = CodeDataModule(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="dropped 2 val records"):
        out = dm.load_records()
    assert ids(out["val"]) == {extra[0]["id"], extra[1]["id"]}
    assert dm.cross_split_duplicates == 2
    assert dm.data_summary()["cross_split_duplicates"] == 2


def test_test_records_repeating_val_are_named_so_and_dedupe_false_still_counts_them(tmp_path: Path) -> None:
    recs = write_corpus(tmp_path, 10, 10)
    write_records_jsonl(recs[:14], tmp_path / "train.jsonl")
    write_records_jsonl(recs[14:17], tmp_path / "valid.jsonl")
    # test: one function of val, one of train, one new
    write_records_jsonl([dict(recs[15], id="t-val"), dict(recs[3], id="t-train"), recs[19]], tmp_path / "test.jsonl")
    dm = CodeDataModule(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"dropped 2 test records whose text also appears in train \(1\) or val \(1\)"):
        assert ids(dm.load_records()["test"]) == {recs[19]["id"]}
    # dedupe: false keeps them, but a test scored on training functions is never silent
    dm = CodeDataModule(data_dir=str(tmp_path), dedupe=False)
    with pytest.warns(UserWarning, match=r"kept \(dedupe: false\) 2 test records whose text also appears in train"):
        assert len(dm.load_records()["test"]) == 3
    assert dm.data_summary()["cross_split_duplicates"] == 2


def test_max_records_cap_keeps_the_label_ratio(tmp_path: Path) -> None:
    write_corpus(tmp_path, 80, 20)
    dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, split=(0.8, 0.1, 0.1),
                        max_records=40)
    recs = dm.load_records()
    assert len(recs["train"]) == 40
    counts = Counter(r.target for r in recs["train"])
    assert counts == {0: 32, 1: 8}
    assert len(recs["val"]) == 10 and len(recs["test"]) == 10  # already under the cap: untouched


def test_on_error_skip_counts_a_bad_line_and_raise_names_file_line_field(tmp_path: Path) -> None:
    recs = write_corpus(tmp_path, 6, 6)
    lines = [json.dumps(r) for r in recs]
    lines.insert(3, json.dumps({"id": "bad", "func": "int f(void){return 0;}", "target": 7}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, on_error="skip")
    with pytest.warns(UserWarning, match="skipped 1 bad line"):
        out = dm.load_records()
    assert sum(len(v) for v in out.values()) == 12
    report = dm.data_summary()["read_reports"]["train"]
    assert report["skipped_count"] == 1
    assert report["skipped"][0]["line"] == 4 and report["skipped"][0]["field"] == "target"

    strict = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, on_error="raise")
    with pytest.raises(RecordError) as err:
        strict.load_records()
    assert str(err.value).startswith(f"{tmp_path / 'train.jsonl'}:4: field 'target'")


def test_data_summary_keys_and_values(tiny_corpus: Path) -> None:
    dm = CodeDataModule(data_dir=str(tiny_corpus))
    summary = dm.data_summary()
    assert set(summary) == {"source", "fingerprint", "split_sizes", "label_counts", "read_reports",
                            "cross_split_duplicates"}
    assert summary["source"] == str(tiny_corpus)
    assert summary["split_sizes"] == {s: len(v) for s, v in dm.records.items()}
    for s in ("train", "val", "test"):
        counts = summary["label_counts"][s]
        assert counts[0] + counts[1] == summary["split_sizes"][s] and counts[0] > 0 and counts[1] > 0
    assert len(summary["fingerprint"]) == 64
    # the fingerprint moves with the records: a different split gives a different one
    other = CodeDataModule(data_dir=str(tiny_corpus), val_files=None, test_files=None).data_summary()
    assert other["fingerprint"] != summary["fingerprint"]
    json.dumps(summary)  # plain JSON for the metadata file


def test_data_dir_juliet_reads_the_folder_named_by_the_environment(tmp_path: Path, monkeypatch) -> None:
    shared = tmp_path / "my_juliet"
    write_corpus(shared, 5, 5, name="train-00.jsonl")
    monkeypatch.setenv("STREAMGUARD_JULIET_DIR", str(shared))
    monkeypatch.chdir(tmp_path)  # no ./juliet here, so the name means the data set
    dm = CodeDataModule(data_dir="juliet", train_files="train-*.jsonl", val_files=None, test_files=None)
    assert dm.source_dir == shared
    assert sum(len(v) for v in dm.load_records().values()) == 10


def test_no_training_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no training files match"):
        CodeDataModule(data_dir=str(tmp_path)).load_records()


# ---------------------------------------------------------------------------- token batches


def test_balanced_sampler_gives_about_half_positives_on_a_20_80_dataset(tmp_path: Path) -> None:
    write_corpus(tmp_path / "d", 160, 40)
    dm = TokenDataModule(data_dir=str(tmp_path / "d"), val_files=None, test_files=None, split=(0.9, 0.05, 0.05),
                         batch_size=16, balanced_sampler=True, output_dir=str(tmp_path / "run"), **TOKENS)
    dm.setup("fit")
    labels = dm.datasets["train"].labels
    assert sum(labels) / len(labels) == pytest.approx(0.2, abs=0.01)
    loader = dm.train_dataloader()  # Lightning builds it once per fit and iterates it every epoch
    epochs = []
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        epochs.append(sorted(int(i) for b in loader for i in b["index"]))
    assert epochs[0] != epochs[1]  # each epoch draws afresh (with replacement)
    drawn = [labels[i] for e in epochs for i in e]
    assert len(drawn) == 3 * len(labels)
    assert 0.42 < sum(drawn) / len(drawn) < 0.58


def test_token_batches_cover_every_record_once_and_pad_to_the_longest(tmp_path: Path, tiny_corpus: Path) -> None:
    dm = TokenDataModule(data_dir=str(tiny_corpus), batch_size=8, output_dir=str(tmp_path),
                         bpe_vocab_size=2000, max_length=1024)
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert max(ds.lengths) < 1024  # nothing truncated: the lengths really vary
    seen: list[int] = []
    spreads = []
    for batch in dm.train_dataloader():
        n_tokens = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == math.ceil(int(n_tokens.max()) / 8) * 8
        for row, i in enumerate(batch["index"].tolist()):
            want = ds[i]["input_ids"]
            assert torch.equal(batch["input_ids"][row, : len(want)], want)
            assert int(n_tokens[row]) == len(want)
            assert (batch["input_ids"][row, len(want):] == dm.tokenizer.pad_token_id).all()
        assert batch["labels"].tolist() == [ds.labels[i] for i in batch["index"].tolist()]
        seen += batch["index"].tolist()
        spreads.append(int(n_tokens.max() - n_tokens.min()))
    assert sorted(seen) == list(range(len(ds)))
    # bucketing: batches hold similar lengths, far tighter than the spread of the whole split
    lengths = ds.lengths
    assert max(spreads) < (max(lengths) - min(lengths)) / 2


def test_fixed_padding_pads_every_batch_to_max_length(tmp_path: Path, tiny_corpus: Path) -> None:
    dm = TokenDataModule(data_dir=str(tiny_corpus), batch_size=8, fixed_padding=True, output_dir=str(tmp_path),
                         **TOKENS)
    dm.setup("validate")
    widths = {b["input_ids"].shape[1] for b in dm.val_dataloader()}
    assert widths == {TOKENS["max_length"]}


def test_trained_tokenizer_is_saved_in_the_run_folder_and_reused(tmp_path: Path, tiny_corpus: Path) -> None:
    dm = TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path), **TOKENS)
    dm.setup("fit")
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    again = TokenDataModule(data_dir=str(tiny_corpus), tokenizer_name_or_path=str(tmp_path / "tokenizer"), **TOKENS)
    again.setup("test")
    assert again.tokenizer.get_vocab() == dm.tokenizer.get_vocab()


# ---------------------------------------------------------------------------- graph batches


def test_graph_batches_are_pyg_batches_with_labels_and_positions(tmp_path: Path, tiny_corpus: Path) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, output_dir=str(tmp_path))
    dm.setup("fit")
    recs = dm.records["train"]
    seen = []
    for batch in dm.train_dataloader():
        assert isinstance(batch, Batch)
        idx = batch.idx.view(-1).tolist()
        assert batch.y.view(-1).tolist() == [recs[i].target for i in idx]
        assert batch.rid == [recs[i].id for i in idx]
        assert int(batch.x[:, 1].max()) < BUCKETS
        seen += idx
    assert sorted(seen) == list(range(len(recs)))


def test_graph_statistics_json_is_written_in_the_run_folder(tmp_path: Path, tiny_corpus: Path) -> None:
    run = tmp_path / "run"
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, max_nodes=40,
                         output_dir=str(run))
    dm.setup("fit")
    stats = json.loads((run / "graph_statistics.json").read_text())
    assert set(stats) == {"train", "val"}
    assert stats["train"]["n_graphs"] == len(dm.records["train"])
    assert stats["train"]["nodes"]["max"] == 40  # max_nodes caps every graph
    assert stats["train"]["truncated"] > 0
    assert set(stats["train"]["edge_type_counts"]) == set(dm.graph_config.edge_type_names)


def test_graph_statistics_go_to_the_trainer_root_without_output_dir(tmp_path: Path, tiny_corpus: Path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=32, token_buckets=BUCKETS)
    trainer(tmp_path / "root", fast_dev_run=1).fit(GNNClassifier(**tiny_gnn), dm)
    assert (tmp_path / "root" / "graph_statistics.json").is_file()


def test_predict_stage_scores_the_given_records(tmp_path: Path, tiny_corpus: Path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=4, token_buckets=BUCKETS, output_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="set_predict_records"):
        dm.setup("predict")
    funcs = ["int f(int a) { return a + 1; }", "void g(char *s) { char b[4]; strcpy(b, s); }",
             "int h(int *p) { if (!p) return -1; return *p; }", "int k(void) { int x = 0; x++; return x; }",
             "void m(int n) { while (n--) work(n); }"]
    records = [CodeRecord(id=f"file.c:{i}", func=f, target=0) for i, f in enumerate(funcs)]
    dm.set_predict_records(records)
    out = trainer(tmp_path).predict(GNNClassifier(**tiny_gnn), datamodule=dm)
    index = torch.cat([o["index"] for o in out]).tolist()
    probs = torch.cat([o["probs"] for o in out])
    assert sorted(index) == list(range(len(funcs)))
    assert ((probs >= 0) & (probs <= 1)).all() and probs.shape == (len(funcs),)
    # scoring files must not overwrite the run's training-data statistics
    assert not (tmp_path / "graph_statistics.json").exists()


def test_token_predict_reuses_the_trained_tokenizer(tmp_path: Path, tiny_corpus: Path) -> None:
    TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path), **TOKENS).setup("fit")
    dm = TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path), **TOKENS)
    dm.set_predict_records([CodeRecord(id="a", func="int f(void) { return 1; }", target=0)])
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["index"].tolist() == [0]
    assert batch["input_ids"][0, 0] == dm.tokenizer.bos_token_id


@pytest.mark.parametrize("whitespace", ["keep", "collapse"])
def test_collapsed_whitespace_makes_formatting_invisible_to_the_tokens(tmp_path: Path, tiny_corpus: Path,
                                                                        whitespace: str) -> None:
    dm = TokenDataModule(data_dir=str(tiny_corpus), output_dir=str(tmp_path), whitespace=whitespace, **TOKENS)
    dm.setup("fit")
    vocab = dm.tokenizer.get_vocab()
    # merged byte-level BPE tokens with a newline (Ċ) or two spaces (ĠĠ); the 256 single bytes are always there
    spacing = [t for t in vocab if len(t) > 1 and ("\u010a" in t or "\u0120\u0120" in t)]
    assert bool(spacing) == (whitespace == "keep")
    one_line = "int f(int a) { if (a > 0) return a; return 0; }"
    spread = "int f(int a)\n{\n\n    if (a > 0)\n\t\treturn a;\n    return 0;\n}\n"
    dm.set_predict_records([CodeRecord(id="a", func=one_line, target=0), CodeRecord(id="b", func=spread, target=0)])
    dm.setup("predict")
    rows = {int(b["index"][k]): b["input_ids"][k][b["attention_mask"][k].bool()].tolist()
            for b in dm.predict_dataloader() for k in range(len(b["index"]))}
    assert (rows[0] == rows[1]) == (whitespace == "collapse")


# ---------------------------------------------------------------------------- fusion batches


def test_fusion_batches_carry_tokens_and_graph_of_the_same_records(tmp_path: Path, tiny_corpus: Path) -> None:
    dm = FusionDataModule(data_dir=str(tiny_corpus), batch_size=8, token_buckets=BUCKETS, output_dir=str(tmp_path),
                          **TOKENS)
    dm.setup("fit")
    recs = dm.records["train"]
    graphs = {int(g.idx): g for g in dm.graph_features.graphs["train"]}
    tokens = dm.datasets["train"].tokens
    seen = []
    for batch in dm.train_dataloader():
        idx = batch["index"].tolist()
        g = batch["graph"]
        assert g.idx.view(-1).tolist() == idx
        assert g.y.view(-1).tolist() == batch["labels"].tolist() == [recs[i].target for i in idx]
        assert g.rid == [recs[i].id for i in idx]
        for k, i in enumerate(idx):
            assert torch.equal(g.get_example(k).x, graphs[i].x)
            want = tokens[i]["input_ids"]
            assert torch.equal(batch["tokens"]["input_ids"][k, : len(want)], want)
        seen += idx
    assert sorted(seen) == list(range(len(recs)))
    assert (tmp_path / "graph_statistics.json").is_file()


@pytest.fixture
def corpus_with_unparsable(tmp_path: Path) -> Path:
    """Train file with two functions that pass record validation but have no code for tree-sitter."""
    recs = write_corpus(tmp_path / "d", 12, 12)
    comment_only = [{"id": "only-comment", "func": "/* removed by the preprocessor */", "target": 1},
                    {"id": "only-line-comment", "func": "// TODO\n", "target": 0}]
    write_records_jsonl(comment_only[:1] + recs + comment_only[1:], tmp_path / "d" / "train.jsonl")
    return tmp_path / "d"


@pytest.mark.parametrize(("policy", "subtokens"), [("drop", 0), ("placeholder", 0), ("placeholder", 3)])
def test_missing_graph_policy_is_applied_and_counted(corpus_with_unparsable: Path, tmp_path: Path, policy: str,
                                                     subtokens: int) -> None:
    dm = FusionDataModule(data_dir=str(corpus_with_unparsable), val_files=None, test_files=None, split=(1.0, 0.0, 0.0),
                          on_error="skip", missing_graph=policy, batch_size=8, token_buckets=BUCKETS,
                          subtokens=subtokens, output_dir=str(tmp_path / "run"), **TOKENS)
    with pytest.warns(UserWarning, match="2 records have no graph"):
        dm.setup("fit")
    n = len(dm.records["train"])
    assert n == 26
    ds = dm.datasets["train"]
    assert len(ds) == (n - 2 if policy == "drop" else n)
    summary = dm.data_summary()
    assert summary["missing_graphs"]["train"] == 2 and summary["missing_graph_policy"] == policy
    bad = {i for i, r in enumerate(dm.records["train"]) if r.id.startswith("only-")}
    seen, placeholders = [], 0
    for batch in dm.train_dataloader():  # placeholders batch together with real graphs
        g = batch["graph"]
        assert g.idx.view(-1).tolist() == batch["index"].tolist()
        for k, i in enumerate(batch["index"].tolist()):
            if i in bad:
                assert g.get_example(k).num_nodes == 1 and g.get_example(k).edge_index.numel() == 0
                placeholders += 1
        seen += batch["index"].tolist()
    assert placeholders == (0 if policy == "drop" else 2)
    assert sorted(seen) == sorted(set(range(n)) - (bad if policy == "drop" else set()))
    if policy == "placeholder":
        # Bucketing puts the (short) placeholders first in their batch; a real graph first must batch too.
        collate = dm.train_dataloader().collate_fn
        positions = {p: k for k, p in enumerate(ds.positions)}
        real = next(p for p in ds.positions if p not in bad)
        batch = collate([ds[positions[real]], *(ds[positions[b]] for b in sorted(bad))])
        assert batch["graph"].num_graphs == 3
        assert batch["graph"].x.size(1) == 2 + subtokens  # the placeholder is as wide as a built graph
        assert batch["graph"].rid == [dm.records["train"][i].id for i in [real, *sorted(bad)]]
        assert batch["graph"].num_error_nodes.tolist()[1:] == [0, 0]


def test_missing_graph_with_on_error_raise_names_the_record(corpus_with_unparsable: Path, tmp_path: Path) -> None:
    dm = FusionDataModule(data_dir=str(corpus_with_unparsable), val_files=None, test_files=None, split=(1.0, 0.0, 0.0),
                          token_buckets=BUCKETS, output_dir=str(tmp_path / "run"), **TOKENS)
    with pytest.raises(ValueError, match=r"train\.jsonl:1: record 'only-comment': no code in function"):
        dm.setup("fit")
