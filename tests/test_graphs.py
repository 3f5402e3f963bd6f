"""Code graphs: specific AST/NCS/CFG/DFG edges on hand-written functions, options, cache, statistics."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from streamguard_pl.data.graphs import (
    EDGE_TYPES,
    NODE_TYPES,
    GraphBuilder,
    GraphBuildError,
    GraphBuildStats,
    GraphConfig,
    build_graphs,
    graph_statistics,
    load_pt_graphs,
    subwords,
)
from streamguard_pl.data.records import CodeRecord

LOOPS = """int f(int a)
{
    int s = 0;
    while (a > 0) {
        s = s + a;
        a--;
    }
    for (int i = 0; i < 3; i++) {
        if (i == 2)
            break;
        s += i;
    }
    return s;
}
"""

BRANCH = """int g(int x)
{
    int y;
    if (x < 10) {
        y = 1;
    } else {
        y = 2;
    }
    if (x) y = 3;
    return y;
}
"""

JUMPS = """void h(int k)
{
    if (k < 0) return;
    int j = 0;
    switch (k) {
    case 1:
        j++;
    case 2:
        j = 2;
        break;
    default:
        j = 3;
    }
    while (j < 9) {
        j++;
        if (j == 4) continue;
        j = j * 2;
    }
again:
    j--;
    if (j > 0) goto again;
}
"""

DEF_USE = """int f(int v)
{
    int k = n;
    int n = 5;
    n = n + k;
    {
        int v = v * 2;
    }
    return n;
}
"""

CPP = """template <typename T>
T Box_1<T>::get(const std::vector<T>& items) const
{
    auto total = T();
    for (auto& it : items) { total += it; }
    return total;
}
"""


class Graph:
    """A built graph plus its node descriptions, with edges looked up by family and node text."""

    def __init__(self, src: str, config: GraphConfig = GraphConfig(), lang: str | None = "c") -> None:
        builder = GraphBuilder(config)
        self.config = config
        self.data = builder.build(src, lang)
        self.nodes = builder.describe(src, lang)
        assert len(self.nodes) == self.data.num_nodes
        assert [NODE_TYPES.index(t) for t, _ in self.nodes] == self.data.x[:, 0].tolist()

    def edges(self, family: str) -> set[tuple[int, int]]:
        k = self.config.edge_type_names.index(family)
        sel = self.data.edge_type == k
        return {tuple(e) for e in self.data.edge_index[:, sel].t().tolist()}

    def find(self, kind: str, text: str | None = None, nth: int = 0) -> int:
        hits = [i for i, (t, s) in enumerate(self.nodes) if t == kind and (text is None or s.strip() == text)]
        assert len(hits) > nth, f"no {kind} {text!r} #{nth} in {self.nodes}"
        return hits[nth]

    def find_prefix(self, kind: str, prefix: str) -> int:
        hits = [i for i, (t, s) in enumerate(self.nodes) if t == kind and s.startswith(prefix)]
        assert hits, f"no {kind} starting {prefix!r}"
        return hits[0]


# ------------------------------------------------------------------------------------------- edges


def test_while_and_for_back_edges_and_loop_exits():
    g = Graph(LOOPS)
    cfg = g.edges("cfg")
    w_cond = g.find("parenthesized_expression", "(a > 0)")
    body_end = g.find("expression_statement", "a--;")
    assert (body_end, w_cond) in cfg                                  # while back-edge
    assert (w_cond, g.find("expression_statement", "s = s + a;")) in cfg  # cond -> body
    for_init = g.find("declaration", "int i = 0;")
    assert (w_cond, for_init) in cfg                                  # cond -> after the loop
    f_cond, f_update = g.find("binary_expression", "i < 3"), g.find("update_expression", "i++")
    assert (for_init, f_cond) in cfg
    assert (g.find("expression_statement", "s += i;"), f_update) in cfg  # body end -> update
    assert (f_update, f_cond) in cfg                                  # update -> condition back-edge
    assert (f_cond, g.find("return_statement")) in cfg               # cond false -> after the loop


def test_if_else_branches_and_if_without_else_falls_through():
    g = Graph(BRANCH)
    cfg = g.edges("cfg")
    cond = g.find("parenthesized_expression", "(x < 10)")
    then_s, else_s = g.find("expression_statement", "y = 1;"), g.find("expression_statement", "y = 2;")
    assert (g.find("declaration", "int y;"), cond) in cfg
    assert {(cond, then_s), (cond, else_s)} <= cfg
    cond2 = g.find("parenthesized_expression", "(x)")
    assert {(then_s, cond2), (else_s, cond2)} <= cfg                  # both branches join
    ret = g.find("return_statement")
    assert (cond2, g.find("expression_statement", "y = 3;")) in cfg
    assert (cond2, ret) in cfg                                        # no else: cond -> next statement
    assert (cond, ret) not in cfg


def test_break_continue_goto_switch_and_return_to_exit():
    g = Graph(JUMPS)
    cfg = g.edges("cfg")
    sw = g.find("parenthesized_expression", "(k)")
    cases = [i for i, (t, _) in enumerate(g.nodes) if t == "case_statement"]
    assert len(cases) == 3 and all((sw, c) in cfg for c in cases)     # switch -> each case
    assert (g.find("expression_statement", "j++;"), cases[1]) in cfg  # fall-through
    loop_cond = g.find("parenthesized_expression", "(j < 9)")
    assert (g.find("break_statement"), loop_cond) in cfg             # break -> after the switch
    assert (g.find("expression_statement", "j = 3;"), loop_cond) in cfg
    assert (g.find("continue_statement"), loop_cond) in cfg          # continue -> loop condition
    assert (g.find("expression_statement", "j = j * 2;"), loop_cond) in cfg
    labeled = g.find_prefix("labeled_statement", "again:")
    assert (g.find("goto_statement"), labeled) in cfg                # goto -> labeled statement
    assert (loop_cond, labeled) in cfg

    early = g.find("return_statement")
    assert (early, g.find("function_definition")) in cfg            # return -> exit (the function node)
    assert (g.find("parenthesized_expression", "(k < 0)"), g.find("declaration", "int j = 0;")) in cfg
    assert not any(src == early and dst != g.find("function_definition") for src, dst in cfg)


def test_dfg_def_reaches_later_uses_only():
    g = Graph(DEF_USE)
    dfg = g.edges("dfg")
    early_use = g.find("identifier", "n", 0)     # int k = n;  (before the local n exists)
    n_def = g.find("identifier", "n", 1)         # int n = 5;
    lhs, rhs, ret_use = (g.find("identifier", "n", k) for k in (2, 3, 4))  # n = n + k; ... return n;
    k_def, k_use = g.find("identifier", "k", 0), g.find("identifier", "k", 1)
    assert (n_def, rhs) in dfg                   # the declarator reaches the read on the right
    assert (n_def, ret_use) not in dfg           # ... but the assignment kills it
    assert (lhs, ret_use) in dfg
    assert (k_def, k_use) in dfg
    assert not any(dst == early_use for _, dst in dfg)
    assert not any(dst in (n_def, lhs) for _, dst in dfg)  # plain definitions are not reads
    assert all(src < dst for src, dst in dfg)
    param_v, inner_v, init_v = (g.find("identifier", "v", k) for k in range(3))
    assert (param_v, init_v) in dfg and (inner_v, init_v) not in dfg  # a declarator counts after its initialiser


REACH = """int r(const char *src, char *buf, int n)
{
    int len = 0;
    while (src[len]) {
        buf[len] = src[len];
        len++;
    }
    int ret = 0;
    if (n < 0) {
        ret = -1;
        goto fail;
    }
    use(ret);
    if (n) ret = 2; else ret = 3;
    use(ret);
    st->buf[n] = 1;
    st->cnt++;
fail:
    return ret + len + st->cnt;
}
"""


def test_dfg_definitions_reach_along_the_control_flow():
    # Once the last definition in source order alone reached: no loop-carried edges, one branch's
    # value only, and a value set on an error path reached the normal path's use.
    g = Graph(REACH)
    dfg = g.edges("dfg")
    ident = [i for i, (t, s) in enumerate(g.nodes) if t == "identifier"]

    def at(name: str, nth: int) -> int:
        return [i for i in ident if g.nodes[i][1] == name][nth]

    len_init, len_inc = at("len", 0), at("len", 4)              # int len = 0; ... len++;
    assert (len_init, at("len", 1)) in dfg                       # -> while (src[len])
    assert (len_inc, at("len", 1)) in dfg                        # the next iteration's condition
    assert (len_inc, at("len", 2)) in dfg and (len_init, at("len", 2)) in dfg  # buf[len] = ...
    assert {(len_init, at("len", 5)), (len_inc, at("len", 5))} <= dfg  # zero or more iterations reach the return
    ret_init, ret_err, ret_2, ret_3 = at("ret", 0), at("ret", 1), at("ret", 3), at("ret", 4)
    first_use, second_use, returned = at("ret", 2), at("ret", 5), at("ret", 6)
    assert (ret_init, first_use) in dfg and (ret_err, first_use) not in dfg  # the error path jumped away
    assert {(ret_2, second_use), (ret_3, second_use)} <= dfg and (ret_init, second_use) not in dfg
    assert {(ret_err, returned), (ret_2, returned), (ret_3, returned)} <= dfg and (ret_init, returned) not in dfg
    param_src = at("src", 0)
    assert (param_src, at("src", 1)) in dfg and (param_src, at("src", 2)) in dfg  # parameters are definitions
    st_write, st_inc, st_read = at("st", 0), at("st", 1), at("st", 2)
    assert (st_write, st_inc) in dfg                             # st->buf[n] = 1 writes through st
    assert (st_inc, st_read) in dfg and (st_write, st_read) not in dfg  # st->cnt++ too, and it kills the write
    pairs = list(zip(*g.data.edge_index.tolist(), g.data.edge_type.tolist()))
    assert len(set(pairs)) == len(pairs)                         # no edge twice within a family


def test_cfg_break_outside_a_known_loop_goes_on_and_empty_branches_give_one_edge():
    g = Graph("void m(int n) { FOREACH(x, list) { n++; if (n > 3) break; } use(n); if (n) {} else {} done(); }")
    cfg = g.edges("cfg")
    brk, after = g.find("break_statement"), g.find("expression_statement", "use(n);")
    assert (brk, after) in cfg                                   # a macro loop's break: not a dead end
    cond = g.find("parenthesized_expression", "(n)")
    done = g.find("expression_statement", "done();")
    edges = g.data.edge_index[:, g.data.edge_type == g.config.edge_type_names.index("cfg")].t().tolist()
    assert edges.count([cond, done]) == 1


def test_ncs_chains_leaves_in_source_order_and_ast_is_a_tree():
    src = "int f(int a) { return a + 1; }"
    g = Graph(src)
    leaves = [i for i, tok in enumerate(g.data.x[:, 1].tolist()) if tok != 0]
    assert [g.nodes[i][1] for i in leaves] == ["int", "f", "int", "a", "return", "a", "+", "1"]
    assert g.edges("ncs") == set(zip(leaves, leaves[1:]))
    ast = g.edges("ast")
    assert len(ast) == g.data.num_nodes - 1
    assert sorted(dst for _, dst in ast) == list(range(1, g.data.num_nodes))  # one parent each
    ret = g.find("return_statement")
    assert {(g.find("function_definition"), g.find("compound_statement")), (ret, g.find("binary_expression"))} <= ast
    assert (ret, g.find("<anon>", "return")) in ast    # keywords and operators are kept as leaves
    assert not any(t == "<anon>" and s in "{}();," for t, s in g.nodes)  # punctuation is not


def test_token_ids_reserve_zero_and_one_and_hash_stably():
    g = Graph("int f(int a) { return a + a; }")
    x = g.data.x
    inner = [i for i, _ in enumerate(g.nodes) if i in {s for s, _ in g.edges("ast")}]
    assert all(x[i, 1] == 0 for i in inner)
    a1, a2 = g.find("identifier", "a", 1), g.find("identifier", "a", 2)
    assert x[a1, 1] == x[a2, 1] >= 2
    assert x[g.find("identifier", "f"), 1] != x[a1, 1]
    again = Graph("int f(int a) { return a + a; }", GraphConfig(token_buckets=50_000))
    assert torch.equal(again.data.x, x)
    small = Graph("int f(int a) { return a + a; }", GraphConfig(token_buckets=3))
    assert set(small.data.x[:, 1].tolist()) <= {0, 1, 2}


def test_subtoken_columns_hold_the_pieces_of_compound_names_only() -> None:
    src = 'int f(AVCodecContext *avctx, int buf_size) { if (avctx->frame_size > buf_size) log_err("bad size"); return 0; }'
    plain, sub = Graph(src), Graph(src, GraphConfig(subtokens=2))
    x = sub.data.x
    assert x.shape == (plain.data.x.size(0), 4)
    assert torch.equal(x[:, :2], plain.data.x)  # whole-token features unchanged
    buf_size = x[sub.find("identifier", "buf_size")].tolist()
    frame_size = x[sub.find("field_identifier", "frame_size")].tolist()
    assert buf_size[3] == frame_size[3] > 1  # the shared piece "size"
    assert len({buf_size[1], buf_size[2], buf_size[3]}) == 3  # whole name, "buf", "size" all differ
    assert x[sub.find("identifier", "avctx"), 2:].tolist() == [0, 0]  # one piece: the whole token says it
    ctx = x[sub.find("type_identifier", "AVCodecContext"), 2:].tolist()
    assert 0 not in ctx and len(set(ctx)) == 2  # av, codec (context cut off by subtokens=2)
    inner = sorted({s for s, _ in sub.edges("ast")})
    assert x[inner, 1:].abs().sum() == 0
    assert subwords(b"HTTPServer2") == [b"http", b"server", b"2"] and subwords(b"len") == []


# ------------------------------------------------------------------------------------------ options


def _typed_edges(g: Graph) -> set[tuple[str, int, int]]:
    names = g.config.edge_type_names
    return {(names[t], s, d) for (s, d), t in zip(g.data.edge_index.t().tolist(), g.data.edge_type.tolist())}


def test_dropping_a_family_removes_exactly_those_edges():
    full = _typed_edges(Graph(JUMPS))
    assert {name for name, _, _ in full} == set(EDGE_TYPES)
    no_cfg = Graph(JUMPS, GraphConfig(edge_types=("dfg", "ncs", "ast")))
    assert no_cfg.config.edge_types == ("ast", "ncs", "dfg")        # canonical order, compact ids
    assert no_cfg.config.num_edge_types == 3 and int(no_cfg.data.edge_type.max()) == 2
    assert _typed_edges(no_cfg) == {e for e in full if e[0] != "cfg"}
    only_dfg = Graph(JUMPS, GraphConfig(edge_types=("dfg",)))
    assert _typed_edges(only_dfg) == {e for e in full if e[0] == "dfg"}


def test_reverse_edges_double_the_count_with_new_ids():
    fwd = Graph(LOOPS)
    both = Graph(LOOPS, GraphConfig(reverse_edges=True))
    e = fwd.data.edge_index.size(1)
    assert both.data.edge_index.size(1) == 2 * e
    assert both.config.num_edge_types == 8 and both.config.edge_type_names[4:] == [f"{n}_rev" for n in EDGE_TYPES]
    assert torch.equal(both.data.edge_index[:, e:], fwd.data.edge_index.flip(0))
    assert torch.equal(both.data.edge_type[e:], fwd.data.edge_type + 4)
    assert set(both.data.edge_type.tolist()) == set(range(8))


def test_max_nodes_keeps_a_preorder_prefix_and_counts_truncation():
    full = Graph(LOOPS)
    cut = Graph(LOOPS, GraphConfig(max_nodes=20))
    assert full.data.num_nodes > 20 and full.data.truncated == 0
    assert cut.data.num_nodes == 20 and cut.data.x.shape == (20, 2) and cut.data.truncated == 1
    assert torch.equal(cut.data.x, full.data.x[:20])
    assert _typed_edges(cut) == {(n, s, d) for n, s, d in _typed_edges(full) if s < 20 and d < 20}
    recs = [CodeRecord(id="a", func=LOOPS, target=1), CodeRecord(id="b", func=BRANCH, target=0)]
    _, stats = build_graphs(recs, GraphBuilder(GraphConfig(max_nodes=20)))
    assert stats.truncated == 2 and stats.built == 2


def test_syntax_error_still_gives_a_graph_with_error_nodes():
    g = GraphBuilder().build("int f( { x = ; return 1 }", "c")
    assert g.num_error_nodes > 0 and g.num_nodes > 3
    assert NODE_TYPES.index("ERROR") in g.x[:, 0].tolist()
    assert GraphBuilder().build(LOOPS, "c").num_error_nodes == 0


@pytest.mark.parametrize("func", ["", "   \n\t  ", "/* only a comment */"])
def test_empty_function_raises(func):
    with pytest.raises(GraphBuildError):
        GraphBuilder().build(func)


def test_cpp_method_with_templates_parses_as_cpp():
    b = GraphBuilder()
    g = b.build(CPP, "cpp")
    assert g.lang == "cpp" and g.num_error_nodes == 0
    assert b.build(CPP, "c").num_error_nodes > 0                  # the C grammar cannot read it
    assert b.build(CPP).lang == "cpp"                             # auto: C failed, C++ has fewer errors
    assert b.build(LOOPS).lang == "c"                             # auto: C first
    assert GraphBuilder(GraphConfig(lang="c")).build(CPP, "cpp").lang == "c"  # a fixed config wins
    names = {t for t, _ in b.describe(CPP, "cpp")}
    assert {"template_declaration", "for_range_loop", "qualified_identifier"} <= names
    cpp = Graph(CPP, lang="cpp")
    total = [i for i, (t, s) in enumerate(cpp.nodes) if t == "identifier" and s == "total"]
    assert (total[0], total[1]) in cpp.edges("dfg")               # auto total = ...; total += it
    assert (cpp.find("return_statement"), cpp.find("function_definition")) in cpp.edges("cfg")


def test_config_validation_and_builder_pickles():
    with pytest.raises(ValueError, match="edge_types"):
        GraphConfig(edge_types=("ast", "pdg"))
    with pytest.raises(ValueError, match="edge_types"):
        GraphConfig(edge_types=())
    with pytest.raises(ValueError, match="token_buckets"):
        GraphConfig(token_buckets=2)
    with pytest.raises(ValueError, match="lang"):
        GraphConfig(lang="java")
    with pytest.raises(ValueError, match="subtokens"):
        GraphConfig(subtokens=-1)
    with pytest.raises(GraphBuildError, match="lang"):
        GraphBuilder().build(LOOPS, "java")
    assert GraphConfig(edge_types=("dfg", "ast")).fingerprint() == GraphConfig(edge_types=("ast", "dfg")).fingerprint()
    assert GraphConfig().fingerprint() != GraphConfig(max_nodes=999).fingerprint()
    assert GraphConfig().fingerprint() != GraphConfig(subtokens=2).fingerprint()
    clone = pickle.loads(pickle.dumps(GraphBuilder(GraphConfig(reverse_edges=True))))
    assert clone.config.reverse_edges and clone.build(LOOPS).edge_index.size(1) > 0


# ------------------------------------------------------------------------------- many graphs, cache


class CountingBuilder(GraphBuilder):
    def __init__(self, config: GraphConfig = GraphConfig()) -> None:
        super().__init__(config)
        self.calls = 0

    def build(self, func: str, lang: str | None = None) -> Data:
        self.calls += 1
        return super().build(func, lang)


def _records() -> list[CodeRecord]:
    return [
        CodeRecord(id="r1", func=LOOPS, target=1, lang="c", source="a.jsonl:1"),
        CodeRecord(id="r2", func=BRANCH, target=0, lang="c", source="a.jsonl:2"),
        CodeRecord(id="r3", func=CPP, target=1, lang="cpp", source="a.jsonl:3"),
    ]


def test_build_graphs_adds_labels_and_ids_in_order():
    graphs, stats = build_graphs(_records(), GraphBuilder())
    assert [g.rid for g in graphs] == ["r1", "r2", "r3"]
    assert [int(g.y) for g in graphs] == [1, 0, 1] and graphs[0].y.dtype == torch.long
    assert stats.built == 3 and stats.failed == [] and stats.truncated == 0 and not stats.cache_hit


def test_failed_records_are_counted_with_skip_and_named_with_raise():
    recs = _records()[:1] + [CodeRecord(id="bad", func="  ", target=0, source="b.jsonl:7")]
    graphs, stats = build_graphs(recs, GraphBuilder(), on_error="skip")
    assert [g.rid for g in graphs] == ["r1"]
    assert stats.built == 1 and len(stats.failed) == 1
    assert stats.failed[0]["id"] == "bad" and stats.failed[0]["source"] == "b.jsonl:7"
    assert "empty" in stats.failed[0]["reason"] and stats.to_dict()["n_failed"] == 1
    with pytest.raises(GraphBuildError, match=r"b\.jsonl:7.*'bad'"):
        build_graphs(recs, GraphBuilder(), on_error="raise")


def test_cache_hit_reuses_the_file_and_changes_make_new_files(tmp_path: Path):
    recs = _records()
    first = CountingBuilder()
    graphs, stats = build_graphs(recs, first, cache_dir=tmp_path, split_name="train")
    path = Path(stats.cache_file)
    assert first.calls == 3 and path.exists() and path.name.startswith("graphs-train-")
    mtime = path.stat().st_mtime_ns

    second = CountingBuilder()
    again, stats2 = build_graphs(recs, second, cache_dir=tmp_path, split_name="train")
    assert second.calls == 0 and stats2.cache_hit and path.stat().st_mtime_ns == mtime
    assert stats2.built == 3 and stats2.edge_type_names == list(EDGE_TYPES)
    for a, b in zip(graphs, again):
        assert (a.rid, int(a.y), a.lang, a.truncated, a.num_error_nodes) == (b.rid, int(b.y), b.lang, b.truncated, b.num_error_nodes)
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index) and torch.equal(a.edge_type, b.edge_type)

    other_cfg = CountingBuilder(GraphConfig(reverse_edges=True))
    _, stats3 = build_graphs(recs, other_cfg, cache_dir=tmp_path, split_name="train")
    changed = recs[:2] + [CodeRecord(id="r3", func=CPP, target=0, lang="cpp")]  # label change
    _, stats4 = build_graphs(changed, CountingBuilder(), cache_dir=tmp_path, split_name="train")
    assert other_cfg.calls == 3 and not stats3.cache_hit and not stats4.cache_hit
    assert len({stats.cache_file, stats3.cache_file, stats4.cache_file}) == 3
    assert len(list(tmp_path.glob("graphs-train-*.pt"))) == 3


def test_cached_failures_still_raise_and_torn_cache_is_rebuilt(tmp_path: Path):
    recs = _records()[:1] + [CodeRecord(id="bad", func="", target=0, source="b.jsonl:7")]
    _, stats = build_graphs(recs, GraphBuilder(), on_error="skip", cache_dir=tmp_path)
    _, hit = build_graphs(recs, GraphBuilder(), on_error="skip", cache_dir=tmp_path)
    assert hit.cache_hit and hit.failed == stats.failed
    with pytest.raises(GraphBuildError, match="bad"):
        build_graphs(recs, GraphBuilder(), on_error="raise", cache_dir=tmp_path)
    Path(stats.cache_file).write_bytes(b"not a torch file")
    builder = CountingBuilder()
    with pytest.warns(UserWarning, match="unreadable"):
        graphs, rebuilt = build_graphs(recs, builder, on_error="skip", cache_dir=tmp_path)
    assert builder.calls == 2 and len(graphs) == 1 and not rebuilt.cache_hit


def test_load_pt_graphs_reads_saved_data_and_names_bad_files(tmp_path: Path):
    saved = []
    for k in range(3):
        d = Data(x=torch.full((k + 2, 2), k), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([k % 2]))
        torch.save(d, tmp_path / f"g{k}.pt")
        saved.append(d)
    loaded = load_pt_graphs(str(tmp_path / "g*.pt"))
    assert len(loaded) == 3 and all(torch.equal(a.x, b.x) for a, b in zip(saved, loaded))
    assert load_pt_graphs([tmp_path / "g1.pt"])[0].num_nodes == 3
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        load_pt_graphs(tmp_path / "junk.pt")
    torch.save({"x": torch.zeros(2)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="dict.pt.*dict"):
        load_pt_graphs(tmp_path / "dict.pt")
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_pt_graphs(str(tmp_path / "nothing*.pt"))


def test_graph_statistics_values_on_a_hand_made_set():
    def g(n: int, types: list[int], y: int, err: int = 0, trunc: int = 0) -> Data:
        e = len(types)
        return Data(x=torch.zeros((n, 2), dtype=torch.long), edge_index=torch.zeros((2, e), dtype=torch.long),
                    edge_type=torch.tensor(types, dtype=torch.long), num_nodes=n, y=torch.tensor([y]),
                    num_error_nodes=err, truncated=trunc)

    train = [g(2, [0], 1), g(4, [0, 0, 2], 0, err=3), g(6, [1, 3, 3, 3, 0], 1, trunc=1)]
    build = GraphBuildStats(built=3, failed=[{"id": "z", "source": "", "reason": "empty"}])
    stats = graph_statistics({"train": train, "val": []}, {"train": build})
    t = stats["train"]
    assert t["n_graphs"] == 3
    assert t["nodes"] == {"mean": 4.0, "median": 4.0, "p95": pytest.approx(5.8), "max": 6}
    assert t["edges"]["mean"] == 3.0 and t["edges"]["max"] == 5
    assert t["edge_type_counts"] == {"ast": 4, "ncs": 1, "cfg": 1, "dfg": 3}
    assert (t["truncated"], t["graphs_with_parse_errors"], t["error_nodes"]) == (1, 1, 3)
    assert t["label_counts"] == {"0": 1, "1": 2} and t["failed"] == 1
    assert stats["val"]["n_graphs"] == 0 and stats["val"]["nodes"]["mean"] is None
    rev = graph_statistics({"s": [g(2, [5], 0)]}, config=GraphConfig(reverse_edges=True))
    assert rev["s"]["edge_type_counts"]["ncs_rev"] == 1
    with pytest.raises(ValueError, match="edge_type id 5"):
        graph_statistics({"s": [g(2, [5], 0)]})
