"""Bad or surprising input to the datamodules: named in an error or a counted warning, never lost silently.

Each case here once went through without a word: a file re-read as a pattern, a test file also matched
by train's pattern, a corpus cache left half-written, k-fold joining records on repeated ids, graphs
that could not be built left out of a GNN's splits uncounted.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamguard_pl.data.datamodules import CodeDataModule, GraphDataModule
from streamguard_pl.data.records import RecordError, read_records, write_records_jsonl
from streamguard_pl.data.synthetic import generate_records
from streamguard_pl.errors import InputError, InputNotFoundError, OptionError

BUCKETS = 1024  # tests/conftest.py TINY_GNN


def _records(n: int, seed: int = 1, start: int = 0) -> list[dict]:
    """n generated functions, both labels, ids numbered from `start` (each split file numbers its own)."""
    pool = generate_records(n, seed=seed)
    return [dict(r, id=str(start + i)) for i, r in enumerate(pool)]


def test_a_file_name_with_brackets_is_read_as_itself(tmp_path: Path) -> None:
    data = tmp_path / "run [v2]"  # a folder name is not a character class either
    recs = _records(30)
    write_records_jsonl(recs[:10], data / "train.jsonl")
    write_records_jsonl(recs[10:20], data / "train[1].jsonl")
    write_records_jsonl(recs[20:30], data / "train1.jsonl")  # what `train[1].jsonl` matches as a pattern
    dm = CodeDataModule(data_dir=str(data), val_files=None, test_files=None, split=(0.8, 0.2, 0.0))
    dm.load_records()
    assert sorted(Path(f).name for f in dm.reports["train"].files) == ["train.jsonl", "train1.jsonl", "train[1].jsonl"]
    assert dm.reports["train"].records_kept == 30


def test_a_file_two_splits_match_is_an_error(tmp_path: Path) -> None:
    recs = _records(30)
    write_records_jsonl(recs[:20], tmp_path / "train.jsonl")
    write_records_jsonl(recs[20:], tmp_path / "test.jsonl")
    dm = CodeDataModule(data_dir=str(tmp_path), train_files="*.jsonl", val_files=None)
    with pytest.raises(OptionError, match=r"test\.jsonl matches both data\.train_files \('\*\.jsonl'\) and "
                                          r"data\.test_files \('test\*\.jsonl'\)"):
        dm.load_records()


def test_a_half_written_embedded_corpus_is_written_again(tmp_path: Path) -> None:
    dm = CodeDataModule(synthetic_size=200, cache_dir=str(tmp_path))
    dm.prepare_data()
    full = {s: len(v) for s, v in dm.load_records().items()}
    for name in ("valid.jsonl", "test.jsonl", "summary.json"):  # killed after writing train.jsonl
        (dm.source_dir / name).unlink()
    again = CodeDataModule(synthetic_size=200, cache_dir=str(tmp_path))
    again.prepare_data()
    assert {s: len(v) for s, v in again.load_records().items()} == full
    assert "carved" not in json.dumps(again.data_summary()["read_reports"])
    assert set(again.reports) == {"train", "val", "test"}  # read from files, not carved out of train


def test_kfold_keeps_records_whose_ids_repeat_across_the_split_files(tmp_path: Path) -> None:
    write_records_jsonl(_records(40), tmp_path / "train.jsonl")
    write_records_jsonl(_records(20, seed=2), tmp_path / "valid.jsonl")  # ids 0-19 again
    dm = GraphDataModule(data_dir=str(tmp_path), num_folds=2, token_buckets=BUCKETS, max_nodes=200,
                         output_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    for split in ("train", "val"):
        records = dm.records[split]
        assert len({r.id for r in records}) == len(records)
        graphs = dm.datasets[split].graphs
        assert len(graphs) == len(records)
        # each graph sits at its own record's position, labelled as that record
        assert sorted(int(g.idx) for g in graphs) == list(range(len(records)))
        assert all(int(g.y) == records[int(g.idx)].target for g in graphs)
    kept = dm.reports["train"].records_kept + dm.reports["val"].records_kept - dm.cross_split_duplicates
    assert sum(len(dm.records[s]) for s in ("train", "val", "test")) == kept > 50  # test carved out of train
    assert any(r.id.startswith("val:") for s in ("train", "val") for r in dm.records[s])


def test_graphs_that_cannot_be_built_are_counted_and_named(tmp_path: Path) -> None:
    recs = _records(24)
    comment_only = [{"id": "only-comment", "func": "/* removed by the preprocessor */", "target": 1}]
    write_records_jsonl(recs[:16] + comment_only, tmp_path / "train.jsonl")
    write_records_jsonl(recs[16:20], tmp_path / "valid.jsonl")
    write_records_jsonl(recs[20:] + [{"id": "t-comment", "func": "// gone\n", "target": 0}], tmp_path / "test.jsonl")
    dm = GraphDataModule(data_dir=str(tmp_path), on_error="skip", token_buckets=BUCKETS,
                         output_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"\[data\] train: 1 of 17 records have no graph and are left out "
                                         r"\(on_error: skip\); first: .*train\.jsonl:17"):
        dm.setup("fit")
    with pytest.warns(UserWarning, match=r"\[data\] test: 1 of 5 records have no graph"):
        dm.setup("test")
    assert dm.data_summary()["missing_graphs"] == {"train": 1, "val": 0, "test": 1}
    assert len(dm.datasets["test"]) == 4


def test_an_empty_split_is_named_before_lightning_fails_on_it(tmp_path: Path) -> None:
    recs = _records(20)
    write_records_jsonl(recs, tmp_path / "train.jsonl")
    (tmp_path / "valid.jsonl").write_text('{"id": "v1", "func": "int f(void) { return 0; }", "target": 7}\n')
    dm = CodeDataModule(data_dir=str(tmp_path), on_error="skip", test_files=None, split=(0.9, 0.0, 0.1))
    with pytest.warns(UserWarning, match="skipped 1 bad line"):
        with pytest.raises(InputError, match=r"the val split is empty \(data\.val_files 'valid\*\.jsonl': read 1 "
                                             r"files, 1 lines: kept 0, skipped 1 \(bad target: 1\)"):
            dm.setup("fit")


def test_a_carved_split_with_one_label_is_named(tmp_path: Path) -> None:
    recs = _records(40)
    for i, r in enumerate(recs):
        r["commit"] = "a" if r["target"] == 0 else "b"  # two single-label groups
    write_records_jsonl(recs, tmp_path / "train.jsonl")
    dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, group_field="commit")
    with pytest.warns(UserWarning, match=r"the carved val split has 0 label-0 and 0 label-1 records .*"
                                         r"grouped by 'commit'"):
        dm.load_records()
    with pytest.raises(InputError, match=r"the val split is empty \(carved out of train by data\.split \[0\.8, 0\.1, 0\.1\]\)"):
        dm.setup("fit")


def test_given_split_files_sharing_groups_are_named_and_a_missing_group_field_is_an_error(tmp_path: Path) -> None:
    recs = _records(30)
    for i, r in enumerate(recs):
        r["commit"] = f"c{i % 10}"
    write_records_jsonl(recs[:20], tmp_path / "train.jsonl")
    write_records_jsonl(recs[20:25], tmp_path / "valid.jsonl")
    write_records_jsonl(recs[25:], tmp_path / "test.jsonl")
    with pytest.warns(UserWarning, match=r"5 'commit' groups of train are also in val \(5 val records\)"):
        CodeDataModule(data_dir=str(tmp_path), group_field="commit").load_records()
    with pytest.raises(OptionError, match=r"group_field 'comit': no record has this field \(fields of the records: commit"):
        CodeDataModule(data_dir=str(tmp_path), group_field="comit").load_records()


def test_the_balanced_sampler_says_when_train_has_one_label(tmp_path: Path) -> None:
    dm = CodeDataModule(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"the train split has no label-0 records.*\[0, 3\] per label"):
        dm._balanced_sampler([1, 1, 1])


def test_bad_options_and_input_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"data\.split must be .* got \[0\.8, 0\.1, 0\.05\]"):
        CodeDataModule(data_dir=str(tmp_path), split=(0.8, 0.1, 0.05))
    recs = _records(3)
    write_records_jsonl(recs, tmp_path / "train.jsonl")
    with pytest.raises(OptionError, match=r"k=5 folds need at least 5 records \(3 records\)"):
        CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, num_folds=5).load_records()
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_records([tmp_path / "train.jsonl", tmp_path / "shard-2.jsonl"])


def test_a_key_given_twice_is_an_error_and_lone_surrogates_are_read(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"id": "a", "func": "int f(void) { return 0; }", "target": 0, "target": 1}\n')
    with pytest.raises(RecordError, match=r"train\.jsonl:1: field 'target': given twice"):
        read_records(path)
    # what json.dumps writes for text read with surrogateescape: hashing it must not fail
    path.write_text('{"id": "a", "func": "int f(void) { return \'\\udce9\'; }", "target": 0}\n'
                    '{"id": "b", "func": "\\n\\nint g(void) { return 1; }", "target": 1}\n\n')
    recs, report = read_records(path)
    assert [r.id for r in recs] == ["a", "b"] and "\udce9" in recs[0].func
    assert report.summary().startswith("read 1 files, 3 lines (1 blank): kept 2")
    dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, split=(0.5, 0.5, 0.0))
    assert len(dm.data_summary()["fingerprint"]) == 64


def test_max_records_is_the_number_kept(tmp_path: Path) -> None:
    write_records_jsonl(_records(40), tmp_path / "train.jsonl")
    dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, split=(1.0, 0.0, 0.0), max_records=5)
    assert len(dm.load_records()["train"]) == 5


def test_a_named_data_set_hidden_by_a_local_folder_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "devign").mkdir()  # e.g. configs/devign, when run from configs/
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputNotFoundError, match=r"the folder 'devign' here is read, not the shared devign data set"):
        CodeDataModule(data_dir="devign").load_records()


def test_a_list_of_group_fields_groups_by_the_first_each_record_has(tmp_path: Path) -> None:
    # Devign's commit is `commit_id` (exact match) or `commit_id_guess` (fuzzy), never both. Grouped by
    # `commit_id` alone, the records with only a guess were each their own group: a carved val split
    # shared commits, and nearly always their label, with train.
    recs = _records(60)
    for i, r in enumerate(recs):
        r["commit_id" if i % 2 else "commit_id_guess"] = f"c{i % 12}"  # 12 commits, half of them guessed
    write_records_jsonl(recs, tmp_path / "train.jsonl")

    def commits(group_field: object) -> list[set[str]]:
        dm = CodeDataModule(data_dir=str(tmp_path), val_files=None, test_files=None, split=(0.6, 0.2, 0.2),
                            group_field=group_field, seed=1)
        found = dm.load_records()
        return [{r.get("commit_id") or r.get("commit_id_guess") for r in found[s]} for s in ("train", "val", "test")]

    with pytest.warns(UserWarning, match=r"group_field 'commit_id': 30 of 60 records lack it"):
        train, val, test = commits("commit_id")
    assert train & (val | test)  # the guessed commits straddle the splits
    train, val, test = commits(["commit_id", "commit_id_guess"])
    assert not train & val and not train & test and not val & test and val and test
    with pytest.raises(OptionError, match=r"data.group_field must be a field name or a non-empty list of field "
                                          r"names, got \[\]"):
        CodeDataModule(data_dir=str(tmp_path), group_field=[])
    with pytest.raises(OptionError, match=r"group_field \['comit', 'guess'\]: no record has any of these fields"):
        CodeDataModule(data_dir=str(tmp_path), val_files=None, group_field=["comit", "guess"]).load_records()


def test_a_yaml_list_of_group_fields_reaches_the_datamodule(tmp_path: Path) -> None:
    from streamguard_pl.cli import build_cli

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  class_path: streamguard_pl.models.GNNClassifier\n"
                      "data:\n  class_path: streamguard_pl.data.GraphDataModule\n  init_args:\n"
                      f"    data_dir: {tmp_path}\n    group_field: [commit_id, commit_id_guess]\n")
    cli = build_cli(["--config", str(config), "--trainer.logger", "false"])
    assert cli.datamodule.hparams.group_field == ["commit_id", "commit_id_guess"]
