"""`streamguard predict`: tree-sitter function splitting of C/C++ sources, and scoring files, folders and
JSON Lines with a checkpoint of each model kind (one tiny `streamguard fit` per kind)."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from streamguard_pl.cli import main
from streamguard_pl.data.records import RecordError
from streamguard_pl.predict import records_from_input, split_functions

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CONF = Path(__file__).resolve().parent / "conf"

C_SOURCE = """\
#include <string.h>
static int add(int a, int b)
{
    return a + b;
}

char *copy(char *dst, const char *src) { strcpy(dst, src); return dst; }

#ifdef DEBUG
void dbg(void) { puts("debug"); }
#endif

int broken_inside(int x) {
    return x +* ;
}

void after(char *s) {
    printf("%s", s);
}
"""

CPP_SOURCE = """\
namespace outer {
namespace inner {
class Widget {
public:
    int size() const { return n_; }
    void resize(int n);
    ~Widget() { }
private:
    int n_;
};
void Widget::resize(int n) { n_ = n; }
template <typename T>
T max_of(T a, T b) { return a > b ? a : b; }
}  // namespace inner
}  // namespace outer

extern "C" int c_entry(void) { return 0; }
int main() { return 0; }
"""

A_C = """\
#include <string.h>
void copy_name(char *dst, const char *src) {
    char buf[16];
    strcpy(buf, src);
    memcpy(dst, buf, 16);
}

int twice(int x) { return 2 * x; }
"""

B_CPP = """\
namespace ns {
struct S { int get() const { return v; } int v; };
int helper(int *p) { if (!p) return -1; return *p; }
}
"""


def _spans(source: str, lang: str) -> list[tuple[str, int, int]]:
    return [(f.name, f.start_line, f.end_line) for f in split_functions(source, lang)]


def test_split_c_functions() -> None:
    assert _spans(C_SOURCE, "c") == [
        ("add", 2, 5), ("copy", 7, 7), ("dbg", 10, 10), ("broken_inside", 13, 15), ("after", 17, 19),
    ]
    add = split_functions(C_SOURCE, "c")[0]
    assert add.text == "static int add(int a, int b)\n{\n    return a + b;\n}"


def test_split_cpp_nested_namespaces_and_classes() -> None:
    assert _spans(CPP_SOURCE, "cpp") == [
        ("size", 5, 5), ("~Widget", 7, 7), ("Widget::resize", 11, 11), ("max_of", 13, 13),
        ("c_entry", 17, 17), ("main", 18, 18),
    ]  # `void resize(int n);` is a declaration, not a definition


def test_split_finds_friend_functions_and_every_preprocessor_branch() -> None:
    cpp = "class A {\n  friend int f(A a) { return 0; }\n  int g() { return 1; }\n};\n"
    assert _spans(cpp, "cpp") == [("f", 2, 2), ("g", 3, 3)]
    c = ("#ifdef X\nint a(void) { return 0; }\n#elifdef Y\nint b(void) { return 1; }\n"
         "#else\nint c(void) { int (*p)(void) = 0; return 2; }\n#endif\n")
    assert _spans(c, "c") == [("a", 2, 2), ("b", 4, 4), ("c", 6, 6)]


def test_split_survives_a_syntax_error() -> None:
    source = "int good1(void) { return 1; }\nint oops( {\nint good2(int y) {\n  return y * 2;\n}\n"
    spans = split_functions(source, "c")
    assert [(s.name, s.start_line, s.end_line) for s in spans] == [("good1", 1, 1), ("good2", 3, 5)]
    assert spans[1].text == "int good2(int y) {\n  return y * 2;\n}"


IFDEF_BRACES = """\
int first(int x)
{
#ifdef HAVE_FOO
	if (x) {
#else
	if (!x) {
#endif
		return 1;
	}
	return 0;
}

int second(char *p)
{
	return p[0];
}
"""
MISSING_BRACE = "int a1(int x)\n{\n\tif (x) {\n\t\treturn 1;\n\treturn 0;\n}\n\nint a2(char *p)\n{\n\treturn 0;\n}\n"
KERNEL_MACROS = """\
static DEFINE_MUTEX(lock)

static int __init my_init(void)
{
	return 0;
}

SYSCALL_DEFINE3(read, unsigned int, fd, char __user *, buf, size_t, count)
{
	return ksys_read(fd, buf, count);
}
"""


def _split(source: str, lang: str) -> tuple[list[tuple[str, int, int, bool]], list[int]]:
    from streamguard_pl.predict import split_source  # imported here: the older tests below need only split_functions

    split = split_source(source, lang)
    return [(f.name, f.start_line, f.end_line, f.parse_error) for f in split.functions], split.unsplit_lines


def test_split_recovers_what_error_recovery_broke_and_flags_it() -> None:
    # a header and body left loose in an ERROR node by two `if (...) {` of an #ifdef: `first` was lost
    assert _spans(IFDEF_BRACES, "c") == [("first", 1, 11), ("second", 13, 16)]
    assert split_functions(IFDEF_BRACES, "c")[0].text.endswith("\treturn 0;\n}")
    # a missing `}`: a1 swallowed a2 and was scored as one function
    assert _spans(MISSING_BRACE, "c") == [("a1", 1, 6), ("a2", 8, 11)]
    # a macro call without `;` took `static int` from my_init; SYSCALL_DEFINE3's body was dropped
    assert _spans(KERNEL_MACROS, "c") == [("my_init", 3, 6), ("SYSCALL_DEFINE3", 8, 11)]
    assert split_functions(KERNEL_MACROS, "c")[0].text.startswith("static int __init my_init(void)")
    # each recovered definition is flagged; what cannot be recovered is counted where it is
    assert _split(IFDEF_BRACES, "c") == ([("first", 1, 11, True), ("second", 13, 16, False)], [])
    assert _split(MISSING_BRACE, "c") == ([("a1", 1, 6, True), ("a2", 8, 11, False)], [])
    assert _split(KERNEL_MACROS, "c") == ([("my_init", 3, 6, True), ("SYSCALL_DEFINE3", 8, 11, True)], [])
    assert _split("int broken( {\n  return 1;\n", "c") == ([], [1])
    assert _split("int ok(void) { return 0; }\n{ int stray; }\n", "c") == ([("ok", 1, 1, False)], [2])


def test_function_names_of_unusual_declarators() -> None:
    c = ("int (*get_handler(int x))(int) { return 0; }\n"
         "static void __attribute__((noinline)) attr_fn(char *p) { p[0] = 0; }\n")
    assert [f.name for f in split_functions(c, "c")] == ["get_handler", "attr_fn"]
    cpp = "struct B {\n  operator bool() const { return true; }\n};\nB::operator int() { return 1; }\n"
    assert [f.name for f in split_functions(cpp, "cpp")] == ["operator bool", "B::operator int"]


def test_headers_take_the_grammar_with_fewer_errors_and_template_files_are_cpp(tmp_path: Path) -> None:
    header = "namespace ui {\nclass W {\n  int size() const { return n_; }\n  int n_;\n};\n}\n"
    (tmp_path / "w.h").write_text(header)
    (tmp_path / "c.h").write_text("static inline int sq(int x) { return x * x; }\n")
    for suffix in (".inl", ".ipp", ".tcc", ".cu"):
        (tmp_path / f"t{suffix}").write_text("template <typename T> T id(T v) { return v; }\n")
    recs = records_from_input(tmp_path)
    assert [(Path(r.get("file")).name, r.get("function"), r.lang) for r in recs] == [
        ("c.h", "sq", "c"), ("t.cu", "id", "cpp"), ("t.inl", "id", "cpp"), ("t.ipp", "id", "cpp"),
        ("t.tcc", "id", "cpp"), ("w.h", "size", "cpp")]


def test_a_file_not_split_cleanly_is_warned_about_and_counted(tmp_path: Path) -> None:
    (tmp_path / "u.c").write_text(IFDEF_BRACES)
    (tmp_path / "k.c").write_text(KERNEL_MACROS + "int broken( {\n")
    from streamguard_pl.predict import SplitTally

    tally = SplitTally()
    with pytest.warns(UserWarning) as caught:
        recs = records_from_input(tmp_path, tally)
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"{tmp_path / 'k.c'}: 2 function definitions hold parse errors (lines 3 (my_init), 8 (SYSCALL_DEFINE3)) and "
        f"1 error regions lie outside any definition (lines 12): scored as split, bounds approximate",
        f"{tmp_path / 'u.c'}: 1 function definitions hold parse errors (lines 1 (first)) and 0 error regions lie "
        f"outside any definition (lines -): scored as split, bounds approximate"]
    assert (tally.parse_errors, tally.unsplit) == (3, 1)
    assert [(r.get("function"), r.get("parse_error")) for r in recs] == [
        ("my_init", True), ("SYSCALL_DEFINE3", True), ("first", True), ("second", False)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.c").write_text(A_C)
    (root / "src" / "sub" / "b.cpp").write_text(B_CPP)
    (root / "src" / "notes.txt").write_text("int not_code(void) { return 0; }\n")  # not a C/C++ suffix
    jsonl = root / "functions.jsonl"
    with jsonl.open("w") as handle:
        for fn in split_functions(A_C, "c"):
            handle.write(json.dumps({"id": f"j-{fn.name}", "func": fn.text, "target": 0, "lang": "c"}) + "\n")
    return {"file": root / "src" / "a.c", "folder": root / "src", "jsonl": jsonl}


def test_records_from_folder(sources: dict[str, Path]) -> None:
    recs = records_from_input(sources["folder"])
    assert [(Path(r.get("file")).name, r.get("function"), r.get("start_line")) for r in recs] == [
        ("a.c", "copy_name", 2), ("a.c", "twice", 8), ("b.cpp", "get", 2), ("b.cpp", "helper", 3)]
    assert [r.lang for r in recs] == ["c", "c", "cpp", "cpp"]
    with pytest.raises(FileNotFoundError, match="input not found"):
        records_from_input(sources["folder"] / "missing.c")


def test_a_file_without_functions_is_reported_and_a_cut_outside_0_1_refused(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "decls.h").write_text("int f(void);\n")
    (tmp_path / "a.c").write_text(A_C)
    with pytest.warns(UserWarning, match=r"1 of 2 source files under .* hold no function definition \(first: .*decls\.h\)"):
        recs = records_from_input(tmp_path)
    assert [r.get("function") for r in recs] == ["copy_name", "twice"]
    with pytest.raises(SystemExit) as info:
        main(["predict", "--ckpt", str(tmp_path / "x.ckpt"), "--input", str(tmp_path), "--threshold", "50"])
    assert info.value.code == 2 and "--threshold is a probability cut in [0, 1], got 50.0" in capsys.readouterr().err


def test_a_source_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "ok.c").write_text(A_C)
    (tmp_path / "latin1.c").write_bytes("int f(void) { return 0; } /* caf\xe9 */\n".encode("latin-1"))
    with pytest.raises(RecordError, match=r"latin1\.c: not UTF-8") as info:
        records_from_input(tmp_path)
    assert info.value.path == str(tmp_path / "latin1.c") and info.value.line == 0


@pytest.fixture(scope="module", params=["gnn", "transformer", "fusion"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a tiny `streamguard fit` of each model kind (config.yaml next to it)."""
    run = tmp_path_factory.mktemp(f"fit_{request.param}")
    assert main(["fit", "--config", str(CONF / f"{request.param}.yaml"), "--trainer.default_root_dir", str(run),
                 "--trainer.logger.init_args.save_dir", str(run)]) == 0
    return run / "checkpoints" / "best.ckpt"


def test_predict_file_folder_and_jsonl(checkpoint: Path, sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores.jsonl"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(sources["file"]), str(sources["folder"]),
                 str(sources["jsonl"]), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    where = [(Path(r["file"]).name, r["function"], r["start_line"]) for r in rows]
    assert where == [
        ("a.c", "copy_name", 2), ("a.c", "twice", 8),                                  # --input a.c
        ("a.c", "copy_name", 2), ("a.c", "twice", 8), ("b.cpp", "get", 2), ("b.cpp", "helper", 3),  # folder
        ("functions.jsonl", "j-copy_name", None), ("functions.jsonl", "j-twice", None),  # JSON Lines
    ]
    assert len({r["id"] for r in rows}) == 8  # a.c given twice: the repeat is scored too, under its own id
    for row in rows:
        assert 0.0 <= row["probability"] <= 1.0
        assert row["label"] == int(row["probability"] >= 0.5)  # the model's default threshold
    by_input = [[r["probability"] for r in rows[i:i + 2]] for i in (0, 2, 6)]
    # the same function text gets the same score however it was given
    assert by_input[1] == pytest.approx(by_input[0], abs=1e-5)
    assert by_input[2] == pytest.approx(by_input[0], abs=1e-5)


def test_a_checkpoint_copied_with_its_features_scores_as_in_its_run(checkpoint: Path, sources: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    run = checkpoint.parents[1]
    moved = tmp_path / "shipped"
    moved.mkdir()
    shutil.copy(checkpoint, moved / "model.ckpt")
    features = [f for f in (run / "tokenizer", run / "token_vocab.json") if f.exists()]
    # (the tiny GNN hashes its tokens: no features to copy, the checkpoint alone scores)
    for f in features:
        (shutil.copytree if f.is_dir() else shutil.copy)(f, moved / f.name)
    before = {f: (f.stat().st_mtime_ns if f.is_file() else (f / "tokenizer.json").stat().st_mtime_ns) for f in features}
    # shipped without its training data: only the copied features can give its token ids
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["init_args"]["data_dir"] = str(tmp_path / "no_training_data_here")
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    scores = []
    for ckpt, extra in ((checkpoint, []), (moved / "model.ckpt", ["--config", str(moved / "config.yaml")])):
        out = tmp_path / f"{ckpt.stem}.jsonl"
        assert main(["predict", "--ckpt", str(ckpt), *extra, "--input", str(sources["file"]), "--output", str(out)]) == 0
        scores.append([json.loads(line)["probability"] for line in out.read_text().splitlines()])
    assert scores[1] == pytest.approx(scores[0], abs=1e-6) and len(scores[0]) == 2
    assert {f: (f.stat().st_mtime_ns if f.is_file() else (f / "tokenizer.json").stat().st_mtime_ns)
            for f in features} == before  # nothing written into the run


def test_predict_csv_and_threshold(checkpoint: Path, sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(sources["folder"]), "--output", str(out),
                 "--threshold", "0"]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "function", "start_line", "probability", "label", "id", "truncated",
                             "parse_error", "error"]
    assert [(Path(r["file"]).name, r["function"], int(r["start_line"])) for r in rows] == [
        ("a.c", "copy_name", 2), ("a.c", "twice", 8), ("b.cpp", "get", 2), ("b.cpp", "helper", 3)]
    assert all(r["label"] == "1" and 0.0 <= float(r["probability"]) <= 1.0 for r in rows)  # threshold 0


LONG_FN = "void long_fn(int *p) {\n" + "".join(f"  p[{i}] = p[{i + 1}] * 2;\n" for i in range(300)) + "}\n"
DEEP_FN = "void deep(int x) {\n" + "if (x) {\n" * 1200 + "}\n" * 1200 + "}\n"


def test_predict_rows_say_truncated_and_why_unscored_and_the_summary_counts_them(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text(A_C)
    (src / "b_long.c").write_text(LONG_FN)   # > 128 tokens and > 1000 graph nodes
    (src / "c_deep.c").write_text(DEEP_FN)   # too deep for the graph builder's CFG pass
    (src / "d_broken.c").write_text("int broken(int x {\n  return x;\n}\n")  # split with a parse error
    out = tmp_path / "scores.csv"
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(src), "--output", str(out),
                 "--on-error", "skip"]) == 0
    with out.open(newline="") as handle:
        rows = {r["function"]: r for r in csv.DictReader(handle)}
    graphs = not checkpoint.parent.parent.name.startswith("fit_transformer")
    assert [rows[f]["truncated"] for f in ("copy_name", "twice", "long_fn")] == ["False", "False", "True"]
    # the row says which definitions held parse errors, as the summary counts them
    assert {f: r["parse_error"] for f, r in rows.items()} == {
        "copy_name": "False", "twice": "False", "long_fn": "False", "deep": "False", "broken": "True"}
    deep = rows["deep"]
    if graphs:  # gnn, and fusion (missing_graph: drop): listed unscored with the graph builder's reason
        assert (deep["probability"], deep["label"], deep["truncated"]) == ("", "", "")
        assert deep["error"] == "statements nested too deeply for the CFG pass"
    else:
        assert (deep["truncated"], deep["error"]) == ("True", "") and 0 <= float(deep["probability"]) <= 1
    flagged = sum(r["label"] == "1" for r in rows.values())
    summary = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[predict]")]
    assert summary == [f"[predict] 5 functions ({int(graphs)} unscored, {2 - int(graphs)} truncated), {flagged} flagged "
                       f"vulnerable at cut 0.5 (default); 1 definitions with parse errors, 0 error regions outside any "
                       f"definition -> {out}"]
    assert main(["predict", "--ckpt", str(checkpoint), "--input", str(src / "a.c"), "--threshold", "0.25"]) == 0
    assert re.search(r"at cut 0\.25 \(--threshold\); .* -> stdout$", capsys.readouterr().err.strip())


def test_a_folder_without_sources_and_an_output_in_a_missing_folder_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "jdir").mkdir()
    (tmp_path / "jdir" / "a.jsonl").write_text(json.dumps({"id": "x", "func": "int f(void) { return 0; }"}) + "\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no C/C\+\+ source files under .*jdir \(suffixes: .*\.c .*\); its 1 "
                                                r"\.jsonl files are read only when given to --input themselves"):
        records_from_input(tmp_path / "jdir")
    with pytest.raises(FileNotFoundError, match=r"no C/C\+\+ source files under .*empty \(suffixes: [^;]*\)$"):
        records_from_input(tmp_path / "empty")
    # checked before the checkpoint is even loaded (it does not exist here), so before any scoring
    args = ["predict", "--ckpt", str(tmp_path / "none.ckpt"), "--input", str(tmp_path / "empty")]
    assert main([*args, "--output", str(tmp_path / "nodir" / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert f"streamguard predict: error: output folder not found: {tmp_path / 'nodir'}" in err and "Traceback" not in err
    assert main([*args, "--output", str(tmp_path / "jdir")]) == 2
    assert f"error: --output {tmp_path / 'jdir'} is a folder" in capsys.readouterr().err


def test_a_run_with_a_named_tokenizer_scores_unlabelled_records_without_its_training_data(
        tiny_corpus: Path, tmp_path: Path) -> None:
    # Once, predict read and validated the whole train split just to load a tokenizer that needs none,
    # and refused JSON Lines without a `target`, which scoring never reads.
    data = tmp_path / "data"
    shutil.copytree(tiny_corpus, data)

    def fit(run: Path, *extra: str) -> None:
        assert main(["fit", "--config", str(CONF / "transformer.yaml"), "--trainer.default_root_dir", str(run),
                     "--trainer.logger.init_args.save_dir", str(run), "--data.init_args.data_dir", str(data),
                     *extra]) == 0

    fit(tmp_path / "bpe")  # its trained BPE, saved in the run folder, is the named tokenizer below
    fit(tmp_path / "run", "--data.init_args.tokenizer_name_or_path", str(tmp_path / "bpe" / "tokenizer"))
    shutil.rmtree(data)
    unlabelled = tmp_path / "new.jsonl"
    unlabelled.write_text("".join(json.dumps({"id": f"n-{fn.name}", "func": fn.text}) + "\n"
                                  for fn in split_functions(A_C, "c")))
    out = tmp_path / "scores.jsonl"
    assert main(["predict", "--ckpt", str(tmp_path / "run" / "checkpoints" / "best.ckpt"), "--input", str(unlabelled),
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["n-copy_name", "n-twice"] and all(0 <= r["probability"] <= 1 for r in rows)
    unlabelled.write_text(json.dumps({"id": "bad", "func": "int f(void) { return 0; }", "target": 2}) + "\n")
    with pytest.raises(RecordError, match=r"new\.jsonl:1: field 'target': must be 0 or 1"):
        records_from_input(unlabelled)  # a label that is there must still be a label


def test_a_checkpoint_with_a_val_tuned_cut_applies_it_and_says_so(sources: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    run = tmp_path / "tuned"
    assert main(["fit", "--config", str(CONF / "gnn.yaml"), "--trainer.default_root_dir", str(run),
                 "--trainer.logger.init_args.save_dir", str(run), "--model.init_args.tune_threshold", "true"]) == 0
    ckpt = run / "checkpoints" / "best.ckpt"
    cut = float(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["decision_threshold"])
    assert cut != 0.5  # tuned on val: otherwise this would not tell the cuts apart
    out = tmp_path / "scores.jsonl"
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(ckpt), "--input", str(sources["folder"]), "--output", str(out)]) == 0
    assert re.search(rf"at cut {cut:.4g} \(val-tuned\); ", capsys.readouterr().err)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(r["label"] == int(r["probability"] >= cut) for r in rows)
