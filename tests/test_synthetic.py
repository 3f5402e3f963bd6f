"""Tests for streamguard_pl.data.synthetic: determinism, balance, valid C, and that the label is
learnable from structure but not from a bag of tokens, at both difficulties."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import tree_sitter as ts
import tree_sitter_c as tsc

from streamguard_pl.data.records import read_records
from streamguard_pl.data.synthetic import CWE, DIFFICULTIES, FAMILIES, generate_records, main, write_synthetic_corpus

pytest.importorskip("sklearn")  # the [dev] extra
from sklearn.feature_extraction.text import CountVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# C tokens: string / char literals whole, identifiers, numbers, two-char operators, punctuation.
C_TOKEN = r'"(?:\\.|[^"\\])*"' r"|'(?:\\.|[^'\\])*'|[A-Za-z_]\w*|\d+|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[^\s\w]"
PARSER = ts.Parser(ts.Language(tsc.language()))


@pytest.fixture(scope="module", params=DIFFICULTIES)
def corpus(request: pytest.FixtureRequest) -> list[dict]:
    """The same 4,000-function corpus at each difficulty: every corpus-wide contract holds for both."""
    return generate_records(4000, seed=0, difficulty=request.param)


@pytest.fixture(scope="module")
def easy_and_hard() -> dict[str, list[dict]]:
    return {d: generate_records(4000, seed=0, difficulty=d) for d in DIFFICULTIES}


def _normalized(text: str) -> str:
    return "".join(text.split())


# ----------------------------------------------------------------------------- shape and determinism


def test_records_have_the_documented_schema(corpus: list[dict]) -> None:
    first = corpus[0]
    assert list(first) == ["id", "func", "target", "cwe", "family", "variant", "group", "lang", "project"]
    assert [r["id"] for r in corpus[:3]] == ["synth-000000", "synth-000001", "synth-000002"]
    assert len({r["id"] for r in corpus}) == len(corpus)
    for r in corpus:
        assert r["target"] in (0, 1) and type(r["target"]) is int
        assert r["cwe"] == CWE[r["family"]]
        assert (r["lang"], r["project"]) == ("c", "synthetic")
        assert r["func"].endswith("}\n")


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_generation_is_deterministic_and_seeded(difficulty: str) -> None:
    a, b = generate_records(300, seed=7, difficulty=difficulty), generate_records(300, seed=7, difficulty=difficulty)
    assert a == b
    other = generate_records(300, seed=8, difficulty=difficulty)
    assert sum(x["func"] != y["func"] for x, y in zip(a, other)) > 290
    # Each instance has its own random stream: a smaller corpus is a prefix of a larger one.
    assert generate_records(100, seed=7, difficulty=difficulty) == a[:100]


def test_easy_is_the_default_and_differs_from_hard(easy_and_hard: dict[str, list[dict]]) -> None:
    easy, hard = easy_and_hard["easy"], easy_and_hard["hard"]
    assert generate_records(50, seed=0) == easy[:50]
    assert [r["group"] for r in easy] == [r["group"] for r in hard]  # same families, same pairing
    assert sum(e["func"] != h["func"] for e, h in zip(easy, hard)) > 3900
    # Easy: less filler and fewer wrappers, so shorter functions (faster to train on, too).
    mean_lines = {d: statistics.fmean(r["func"].count("\n") for r in c) for d, c in easy_and_hard.items()}
    assert mean_lines["easy"] < mean_lines["hard"] - 2, mean_lines
    # Easy uses the first two variants of each label and family; hard uses them all.
    for fam in FAMILIES:
        n_easy = len({r["variant"] for r in easy if r["family"] == fam})
        n_hard = len({r["variant"] for r in hard if r["family"] == fam})
        assert n_easy == 4 and n_hard >= 5, (fam, n_easy, n_hard)
    with pytest.raises(ValueError, match="difficulty must be one of easy, hard; got 'medium'"):
        generate_records(10, difficulty="medium")


def test_families_are_interleaved_and_balanced(corpus: list[dict]) -> None:
    assert len(FAMILIES) >= 12 and len(set(FAMILIES)) == len(FAMILIES)
    assert {r["family"] for r in corpus[: 2 * len(FAMILIES)]} == set(FAMILIES)
    per_family = Counter(r["family"] for r in corpus)
    assert max(per_family.values()) - min(per_family.values()) <= 2
    for fam in FAMILIES:
        labels = Counter(r["target"] for r in corpus if r["family"] == fam)
        assert abs(labels[0] - labels[1]) <= 1, (fam, labels)


@pytest.mark.parametrize("n", [0, 1, 2, 13, 101])
def test_labels_are_balanced_for_any_n(n: int) -> None:
    recs = generate_records(n, seed=3)
    assert len(recs) == n
    ones = sum(r["target"] for r in recs)
    assert abs(2 * ones - n) <= 1


def test_every_family_has_both_labels_and_several_variants(corpus: list[dict]) -> None:
    variants: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in corpus:
        variants[(r["family"], r["target"])].add(r["variant"])
    for fam in FAMILIES:
        assert len(variants[(fam, 0)]) >= 2, (fam, variants[(fam, 0)])
        assert len(variants[(fam, 1)]) >= 2, (fam, variants[(fam, 1)])
        assert not variants[(fam, 0)] & variants[(fam, 1)]


def test_each_group_is_one_vulnerable_and_one_fixed_rendering(corpus: list[dict]) -> None:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in corpus:
        groups[r["group"]].append(r)
    assert len(groups) == 2000
    for members in groups.values():
        assert sorted(m["target"] for m in members) == [0, 1]
        assert len({m["family"] for m in members}) == 1
    # The pair shares its signature line: names and types are drawn once per instance.
    a, b = next(iter(groups.values()))
    assert a["func"].splitlines()[0] == b["func"].splitlines()[0]


def test_family_subset_and_bad_arguments() -> None:
    recs = generate_records(40, seed=1, families=["double_free", "oob_read"])
    assert [r["family"] for r in recs[::2]] == ["double_free", "oob_read"] * 10
    with pytest.raises(ValueError, match="unknown families.*'nope'"):
        generate_records(10, families=["nope"])
    with pytest.raises(ValueError, match="at least one"):
        generate_records(10, families=[])
    with pytest.raises(ValueError, match="non-negative int"):
        generate_records(-1)


def test_no_function_text_appears_twice(corpus: list[dict]) -> None:
    by_text: dict[str, set[int]] = defaultdict(set)
    for r in corpus:
        by_text[_normalized(r["func"])].add(r["target"])
    assert len(by_text) == len(corpus)  # whitespace-insensitive: so no text carries both labels either


def test_functions_look_like_real_c(corpus: list[dict]) -> None:
    lines = [r["func"].count("\n") for r in corpus]
    assert min(lines) >= 6 and max(lines) <= 80
    assert 18 <= statistics.median(lines) <= 40
    text = "\n".join(r["func"] for r in corpus[:600])
    for construct in ("switch (", "goto ", "else {", "for (", "while (", "do {", "return 0;", "sizeof("):
        assert construct in text, construct


def test_every_function_parses_without_errors(corpus: list[dict]) -> None:
    bad = []
    for r in corpus[:2000]:
        root = PARSER.parse(r["func"].encode()).root_node
        if root.has_error or [c.type for c in root.children] != ["function_definition"]:
            bad.append(r["id"])
    assert bad == []


def test_generating_4000_functions_is_fast() -> None:
    start = time.perf_counter()
    generate_records(4000, seed=11)
    assert time.perf_counter() - start < 2.0


# ----------------------------------------------------------------------------- learnability
# Train on the first 3,000 functions (1,500 instances) and score on the last 1,000: pairs never
# straddle the cut, so the test instances are unseen.


def _split(corpus: list[dict]) -> tuple[list[dict], list[dict]]:
    train, test = corpus[:3000], corpus[3000:]
    assert not {r["group"] for r in train} & {r["group"] for r in test}
    return train, test


def _accuracy(vectorizer: CountVectorizer, train: list[dict], test: list[dict]) -> float:
    x_train = vectorizer.fit_transform([r["func"] for r in train])
    clf = LogisticRegression(solver="liblinear").fit(x_train, [r["target"] for r in train])
    pred = clf.predict(vectorizer.transform([r["func"] for r in test]))
    return float((pred == [r["target"] for r in test]).mean())


_KEEP = {"sizeof", "NULL", "return", "goto", "break", "0", "1"}


def _shape(node: ts.Node) -> str:
    """A statement with identifiers dropped: punctuation, operators, keywords and callee names."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if n.child_count:
            stack.extend(reversed(n.children))
            continue
        text = n.text.decode()
        callee = n.type == "identifier" and n.parent is not None and n.parent.type == "call_expression"
        if callee or not n.is_named or text in _KEEP:
            out.append(text)
    return "".join(out)


def structure_features(src: str) -> list[str]:
    """Statement shapes plus which shape follows which inside each block (tree-sitter)."""
    feats: list[str] = []
    stack = [PARSER.parse(src.encode()).root_node]
    while stack:
        n = stack.pop()
        stack.extend(n.children)
        if n.type not in ("compound_statement", "case_statement"):
            continue
        kids = [_shape(c) for c in n.named_children if c.type.endswith("statement")]
        seq = ["^", *kids, "$"]
        feats += kids + [f"{a} >> {b}" for a, b in zip(seq, seq[1:])]
    return feats


def test_structure_features_see_statement_order() -> None:
    before = "int f(char *d, const char *s, int n) { if (n > 8) { return -1; } memcpy(d, s, n); return 0; }"
    after = "int f(char *d, const char *s, int n) { memcpy(d, s, n); if (n > 8) { return -1; } return 0; }"
    fb, fa = structure_features(before), structure_features(after)
    assert sorted(set(fb) - {f for f in fb if ">>" in f}) == sorted(set(fa) - {f for f in fa if ">>" in f})
    assert "if(>){return;} >> memcpy(,,);" in fb and "if(>){return;} >> memcpy(,,);" not in fa
    assert "memcpy(,,); >> if(>){return;}" in fa


def test_bag_of_tokens_cannot_read_the_label(corpus: list[dict]) -> None:
    train, test = _split(corpus)
    bow = CountVectorizer(token_pattern=C_TOKEN, ngram_range=(1, 2), lowercase=False)
    acc = _accuracy(bow, train, test)
    print(f"\nbag of unigrams+bigrams: accuracy {acc:.3f}")  # measured: easy 0.855, hard 0.762
    assert 0.6 < acc < 0.95


_RISKY = ("strcpy", "sprintf", "strcat", "gets")


def _token_sets(corpus: list[dict]) -> list[set[str]]:
    return [set(re.findall(C_TOKEN, r["func"])) for r in corpus]


def test_no_single_token_gives_the_label_away(corpus: list[dict]) -> None:
    tokens, labels = _token_sets(corpus), [r["target"] for r in corpus]
    best = 0.0
    for tok in set().union(*tokens):
        hits = sum((tok in s) == bool(y) for s, y in zip(tokens, labels)) / len(labels)
        best = max(best, hits, 1 - hits)
    assert best < 0.8  # measured: easy 0.71 ("sizeof", in most safe calls), hard 0.53


def test_easy_has_a_soft_risky_api_cue_and_hard_has_none(easy_and_hard: dict[str, list[dict]]) -> None:
    """Risky calls lean vulnerable (as in real code) but show up in fixed functions as well."""
    for difficulty, corpus in easy_and_hard.items():
        rate = {}
        for label in (0, 1):
            part = [s for s, r in zip(_token_sets(corpus), corpus) if r["target"] == label]
            rate[label] = sum(any(api in s for api in _RISKY) for s in part) / len(part)
        if difficulty == "hard":
            assert rate == {0: 0.0, 1: 0.0}
        else:  # measured: 0.76 of vulnerable, 0.29 of fixed functions
            assert 0.65 < rate[1] < 0.9 and 0.15 < rate[0] < 0.4, rate


def test_structure_aware_model_learns_the_label(corpus: list[dict]) -> None:
    train, test = _split(corpus)
    structural = _accuracy(CountVectorizer(analyzer=structure_features), train, test)
    bow = _accuracy(CountVectorizer(token_pattern=C_TOKEN, ngram_range=(1, 2), lowercase=False), train, test)
    # measured: easy 0.942 (bag 0.855), hard 0.890 (bag 0.762)
    print(f"\nstructure-aware: accuracy {structural:.3f} (bag of tokens {bow:.3f})")
    assert structural > 0.6
    assert structural > bow + 0.05


# ----------------------------------------------------------------------------- corpus files and CLI


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_write_synthetic_corpus_splits_by_group_and_label(tmp_path: Path) -> None:
    paths = write_synthetic_corpus(tmp_path, n=400, seed=2)
    assert list(paths) == ["train", "val", "test"]
    assert [p.name for p in paths.values()] == ["train.jsonl", "valid.jsonl", "test.jsonl"]
    parts = {name: _jsonl(p) for name, p in paths.items()}
    assert [len(parts[k]) for k in ("train", "val", "test")] == [320, 40, 40]
    groups = [{r["group"] for r in recs} for recs in parts.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    for recs in parts.values():
        assert sum(r["target"] for r in recs) * 2 == len(recs)
    everything = [r for recs in parts.values() for r in recs]
    assert sorted(everything, key=lambda r: r["id"]) == generate_records(400, seed=2)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["splits"]["train"]["count"] == 320
    assert summary["splits"]["val"]["labels"] == {"0": 20, "1": 20}
    fam_total = sum(f["count"] for s in summary["splits"].values() for f in s["families"].values())
    assert fam_total == 400

    # The files read back through the strict reader with nothing dropped.
    recs, report = read_records(list(paths.values()))
    assert len(recs) == 400 and report.skipped_count == 0
    assert report.duplicates_removed == 0 and report.conflicts_removed == 0
    assert recs[0].meta["family"] in FAMILIES


def test_main_writes_three_files_and_prints_a_line_per_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "corpus"
    assert main(["--n", "100", "--out", str(out), "--seed", "4"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["train", "val", "test"]
    assert printed[0].startswith("train: 80 functions (40 vulnerable, 40 fixed")
    counts = {p.name: len(_jsonl(p)) for p in out.glob("*.jsonl")}
    assert counts == {"train.jsonl": 80, "valid.jsonl": 10, "test.jsonl": 10}


def test_difficulty_reaches_the_files_the_cli_and_the_datamodule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = write_synthetic_corpus(tmp_path / "w", n=60, seed=1, difficulty="hard")
    written = sorted((r for p in paths.values() for r in _jsonl(p)), key=lambda r: r["id"])
    assert written == generate_records(60, seed=1, difficulty="hard")
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["difficulty"] == "hard"
    with pytest.raises(ValueError, match="difficulty must be one of"):
        write_synthetic_corpus(tmp_path / "bad", n=10, difficulty="nope")
    assert not (tmp_path / "bad").exists()

    assert main(["--n", "40", "--out", str(tmp_path / "cli"), "--difficulty", "hard"]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["difficulty"] == "hard"
    with pytest.raises(SystemExit):
        main(["--n", "40", "--out", str(tmp_path / "cli2"), "--difficulty", "medium"])
    assert "invalid choice: 'medium'" in capsys.readouterr().err

    from streamguard_pl.data.datamodules import CodeDataModule

    funcs = {}
    for level in DIFFICULTIES:
        dm = CodeDataModule(synthetic_size=40, synthetic_difficulty=level, cache_dir=str(tmp_path / "cache"))
        assert f"-{level}-" in dm.source_dir.name  # each difficulty has its own cached corpus
        funcs[level] = {r.func for recs in dm.load_records().values() for r in recs}
        assert funcs[level] == {r["func"] for r in generate_records(40, difficulty=level)}
    assert not funcs["easy"] & funcs["hard"]


def test_main_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--n", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--n must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--n", "10", "--out", str(tmp_path), "--fractions", "0.5", "0.5", "0.5"])
    assert "fractions must be 3 non-negative numbers" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.jsonl"))
