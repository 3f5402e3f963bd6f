"""Token vocabulary for graph leaves (`min_token_count`): fitting and mapping on hand-made graphs, then
the real thing: tree-sitter graphs of the embedded corpus, a GNN fit, and predict from the saved run."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from _trainers import quiet_trainer
from streamguard_pl.cli import main
from streamguard_pl.data.datamodules import FusionDataModule, GraphDataModule
from streamguard_pl.data.graphs import RAW_TOKEN_IDS, GraphBuilder, GraphConfig
from streamguard_pl.data.vocab import VOCAB_FILE, TokenVocabulary
from streamguard_pl.models import GNNClassifier

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONF = Path(__file__).resolve().parent / "conf"
BUCKETS = 1024


def graph(*tokens: int) -> Data:
    """One inner node (token 0) and one leaf per token, type column 3."""
    return Data(x=torch.tensor([[3, 0]] + [[3, t] for t in tokens], dtype=torch.long))


def test_fit_counts_graphs_not_occurrences_and_keeps_the_most_frequent() -> None:
    graphs = [graph(10, 10, 10, 20, 1), graph(20, 30), graph(20, 30, 40), graph(50, 40)]
    # graphs containing each text: 10 -> 1 (three times in one graph), 20 -> 3, 30 -> 2, 40 -> 2, 50 -> 1
    vocab = TokenVocabulary.fit(graphs, min_count=2, size=100)
    assert vocab.summary() == {"min_count": 2, "size": 3, "qualified": 3, "distinct_train_tokens": 5}
    leaves, unknown = vocab.apply(graphs)
    assert graphs[0].x[:, 1].tolist() == [0, 1, 1, 1, 2, 1]  # 20 is the most frequent: id 2; 10 is rare; 1 stays
    assert graphs[1].x[:, 1].tolist() == [0, 2, 3]           # 30 and 40 tie at 2 graphs: the lower raw id first
    assert graphs[3].x[:, 1].tolist() == [0, 1, 4]
    assert graphs[0].x[:, 0].tolist() == [3] * 6             # node types untouched
    assert (leaves, unknown) == (11, 4)                      # the four 10/50 leaves; the empty-text 1 is not a leaf token

    small = TokenVocabulary.fit([graph(20, 30), graph(20, 30, 40), graph(20, 40)], min_count=1, size=2)
    assert small.summary()["qualified"] == 3 and small.size == 2  # three qualify, the table holds two
    g = graph(20, 30, 40)
    small.apply([g])
    assert g.x[:, 1].tolist() == [0, 2, 3, 1]                # 20 (3 graphs), then 30 and 40 tie: 30 kept, 40 unknown


def test_subtoken_columns_share_the_table(tmp_path: Path) -> None:
    g = Data(x=torch.tensor([[3, 7, 8, 0], [3, 8, 9, 7]], dtype=torch.long))
    vocab = TokenVocabulary.fit([g, Data(x=torch.tensor([[3, 8, 0, 0]]))], min_count=2, size=10)
    vocab.apply([g])
    assert g.x.tolist() == [[3, 1, 2, 0], [3, 2, 1, 1]]      # 8 is in both graphs (as a sub-token in one)


def test_save_load_round_trip_and_bad_file(tmp_path: Path) -> None:
    graphs = [graph(5, 6, 7), graph(6, 7), graph(7, 9)]
    vocab = TokenVocabulary.fit(graphs, min_count=2, size=10)
    vocab.save(tmp_path / VOCAB_FILE)
    again = TokenVocabulary.load(tmp_path / VOCAB_FILE)
    assert again.summary() == vocab.summary()
    a, b = [graph(5, 6, 7, 9)], [graph(5, 6, 7, 9)]
    vocab.apply(a)
    again.apply(b)
    assert torch.equal(a[0].x, b[0].x) and a[0].x[:, 1].tolist() == [0, 1, 3, 2, 1]
    (tmp_path / "bad.json").write_text(json.dumps({"raw_ids": "nope"}))
    with pytest.raises(ValueError, match="bad.json: not a token vocabulary"):
        TokenVocabulary.load(tmp_path / "bad.json")


def test_datamodule_vocabulary_matches_counting_texts_by_hand(tmp_path: Path, tiny_corpus: Path) -> None:
    run = tmp_path / "run"
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, min_token_count=3,
                         output_dir=str(run))
    dm.setup("fit")
    dm.setup("test")
    # Independent count: the leaf texts of each train function's graph, as sets, via raw crc ids.
    builder = GraphBuilder(GraphConfig(token_buckets=RAW_TOKEN_IDS, max_nodes=1000))
    per_function = [set(builder.build(r.func).x[:, 1].tolist()) - {0, 1} for r in dm.records["train"]]
    counts: dict[int, int] = {}
    for texts in per_function:
        for t in texts:
            counts[t] = counts.get(t, 0) + 1
    expected = {t for t, c in counts.items() if c >= 3}
    assert dm.graph_features.vocab.size == len(expected) > 0
    ids = torch.cat([g.x[:, 1] for split in ("train", "val", "test") for g in dm.datasets[split].graphs])
    assert int(ids.max()) == len(expected) + 1  # dense ids 2..size+1, below token_buckets
    stats = json.loads((run / "graph_statistics.json").read_text())
    train_leaves = sum(len(builder.build(r.func).x[:, 1].gt(1).nonzero()) for r in dm.records["train"])
    rare = sum(1 for r in dm.records["train"] for t in builder.build(r.func).x[:, 1].tolist() if t > 1 and t not in expected)
    assert stats["train"]["token_vocabulary"]["leaf_tokens"] == train_leaves
    assert stats["train"]["token_vocabulary"]["unknown_tokens"] == rare > 0
    assert stats["test"]["token_vocabulary"]["size"] == len(expected)
    saved = json.loads((run / VOCAB_FILE).read_text())
    assert sorted(saved["raw_ids"]) == sorted(expected)


def test_a_split_before_train_and_a_bad_count_are_refused(tiny_corpus: Path) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), token_buckets=BUCKETS, min_token_count=2)
    with pytest.raises(RuntimeError, match="build the train split before 'val'"):
        dm.graph_features.build(dm.load_records()["val"], "val")
    with pytest.raises(ValueError, match="min_token_count must be an int >= 0"):
        GraphDataModule(data_dir=str(tiny_corpus), min_token_count=-1)


def test_model_and_data_must_agree_on_min_token_count(tmp_path: Path, tiny_corpus: Path, tiny_gnn) -> None:
    dm = GraphDataModule(data_dir=str(tiny_corpus), batch_size=16, token_buckets=BUCKETS, min_token_count=2)
    with pytest.raises(ValueError, match="data.min_token_count=2 but model.min_token_count=0"):
        quiet_trainer(tmp_path, fast_dev_run=1).fit(GNNClassifier(**tiny_gnn), dm)
    model = GNNClassifier(**tiny_gnn, min_token_count=2)
    quiet_trainer(tmp_path, fast_dev_run=1).fit(model, dm)
    assert model.hparams.min_token_count == 2


def test_fusion_datamodule_uses_the_same_vocabulary(tmp_path: Path, tiny_corpus: Path) -> None:
    graph_dm = GraphDataModule(data_dir=str(tiny_corpus), token_buckets=BUCKETS, min_token_count=2,
                               output_dir=str(tmp_path / "g"))
    graph_dm.setup("fit")
    fusion_dm = FusionDataModule(data_dir=str(tiny_corpus), token_buckets=BUCKETS, min_token_count=2, bpe_vocab_size=300,
                                 max_length=64, output_dir=str(tmp_path / "f"))
    fusion_dm.setup("fit")
    assert fusion_dm.min_token_count == 2
    assert torch.equal(fusion_dm.graph_features.vocab.raw, graph_dm.graph_features.vocab.raw)
    first = fusion_dm.datasets["train"][0]
    assert torch.equal(first["graph"].x, graph_dm.datasets["train"][0].x)


def test_predict_reads_the_saved_vocabulary_without_the_training_data(tmp_path: Path, tiny_corpus: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)
    run = tmp_path / "run"
    args = ["--trainer.default_root_dir", str(run), "--trainer.logger.init_args.save_dir", str(run),
            "--data.init_args.data_dir", str(data), "--data.init_args.min_token_count", "2",
            "--model.init_args.min_token_count", "2"]
    assert main(["fit", "--config", str(CONF / "gnn.yaml"), *args]) == 0
    saved = json.loads((run / VOCAB_FILE).read_text())
    assert saved["min_count"] == 2 and saved["size"] == len(saved["raw_ids"]) > 0
    source = tmp_path / "f.c"
    source.write_text("int twice(int x) { return 2 * x; }\nvoid copy(char *d, char *s) { strcpy(d, s); }\n")
    first = tmp_path / "first.jsonl"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--input", str(source),
                 "--output", str(first)]) == 0
    shutil.rmtree(data)  # the vocabulary must come from the run folder now, not from refitting on train
    second = tmp_path / "second.jsonl"
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--input", str(source),
                 "--output", str(second)]) == 0
    p1 = [json.loads(line)["probability"] for line in first.read_text().splitlines()]
    p2 = [json.loads(line)["probability"] for line in second.read_text().splitlines()]
    assert len(p1) == 2 and p2 == pytest.approx(p1, abs=1e-6)
    (run / VOCAB_FILE).unlink()
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--input", str(source),
                 "--output", str(tmp_path / "third.jsonl")]) == 2
    err = capsys.readouterr().err
    assert re.search(r"streamguard predict: error: data folder not found: .*fitted on the training data unless", err)
    assert "Traceback" not in err and not (tmp_path / "third.jsonl").exists()


def test_the_vocabulary_record_tells_the_same_tokens_ranked_otherwise_apart() -> None:
    from types import SimpleNamespace

    from streamguard_pl.models.compat import graph_features

    def record(ranked: list[int]) -> dict:
        vocab = TokenVocabulary.from_ranked(torch.tensor(ranked), min_count=1, qualified=3, distinct=3)
        return graph_features(SimpleNamespace(graph_features=SimpleNamespace(config=GraphConfig(), vocab=vocab)))

    a, b = record([10, 20, 30]), record([30, 10, 20])  # one token set, other dense ids
    assert a["vocab_sha256"] != b["vocab_sha256"] and a == record([10, 20, 30])
    assert a["edge_types"] == ["ast", "ncs", "cfg", "dfg"] and a["subtokens"] == 0


def test_a_record_of_an_older_format_is_replaced_not_compared() -> None:
    from streamguard_pl.models.compat import RECORD_FORMAT, check_or_record, check_restored

    current = {"format": RECORD_FORMAT, "edge_types": ["ast"], "reverse_edges": False, "subtokens": 0,
               "vocab_sha256": "new"}
    old = {k: v for k, v in current.items() if k != "format"} | {"vocab_sha256": "computed otherwise"}
    hparams = {"graph_features": old}
    with pytest.warns(UserWarning, match=r"model: its graph_features record is of an older format \(v1, now v2\)"):
        assert check_or_record(hparams, "graph_features", current, "model") is True
    assert hparams["graph_features"] == current
    with pytest.warns(UserWarning, match="older format"):
        check_restored(hparams, old, "graph_features", "model")  # a checkpoint from then: no refusal
    assert hparams["graph_features"] == current
    with pytest.raises(ValueError, match=r"edge_types: trained \['ncs'\], data \['ast'\]"):  # unchanged since v1
        check_or_record({"graph_features": old | {"edge_types": ["ncs"]}}, "graph_features", current, "model")
    with pytest.raises(ValueError, match=r"edge_types: trained \['ncs'\], data \['ast'\]"):
        check_restored({"graph_features": current}, old | {"edge_types": ["ncs"]}, "graph_features", "model")
    with pytest.raises(ValueError, match=r"vocab_sha256: trained 'other', data 'new'"):
        check_or_record({"graph_features": current | {"vocab_sha256": "other"}}, "graph_features", current, "model")
    hparams = {"tokenizer_sha256": "0" * 64}  # before the v2 prefix
    with pytest.warns(UserWarning, match="tokenizer_sha256 record is of an older format"):
        assert check_or_record(hparams, "tokenizer_sha256", "v2:" + "1" * 64, "model") is True


def test_apply_gives_searchsorted_contiguous_input() -> None:
    """torch warns once per process (so in a fresh one) when searchsorted gets a strided slice: `predict`
    printed that warning for every run."""
    code = ("import warnings, torch; from torch_geometric.data import Data; "
            "from streamguard_pl.data.vocab import TokenVocabulary; "
            "g = [Data(x=torch.tensor([[3, 0], [3, 10], [3, 20], [3, 10]]))]; v = TokenVocabulary.fit(g, min_count=1, size=10); "
            "warnings.simplefilter('error'); print(v.apply(g), g[0].x[:, 1].tolist())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(3,", "0)", "[0,", "2,", "3,", "2]"]
