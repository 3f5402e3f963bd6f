"""C/C++ function source -> typed PyG code graph (AST + NCS + CFG + DFG), with a per-split cache.

One tree-sitter parse, one cursor pass over the tree that records a few flat Python lists, then
small passes over the statements (CFG) and the identifiers (DFG); tensors are made once at the end.
Node ids are pre-order positions of the *kept* nodes, so ``max_nodes`` truncation is a prefix.

Nodes. Every named node is kept, except ``comment`` (no code semantics; Devign still has them)
and the insides of string/char literals (the literal is one leaf hashed on its full text).
Anonymous tokens are kept as leaves when they carry meaning -- operators (``<``, ``<=``, ``+``,
``*``, ``&``, ``=``, ``->`` ...) and keywords (``return``, ``if``, ``sizeof``, ``const`` ...) -- and
dropped when they are pure punctuation (brackets, ``;``, ``,``, ``:``, ``::``, quotes, ``...``).
``x[:, 0]`` is the node type id into NODE_TYPES (kept anonymous tokens get ``"<anon>"``; their
identity is in the token id), ``x[:, 1]`` the token bucket of a leaf (0 = inner node, 1 = empty
text such as a MISSING node, else 2 + crc32(text) mod (token_buckets - 2)). With ``subtokens=k``
``x[:, 2:2+k]`` hold the buckets of a leaf's first k sub-words (``buf_size`` -> ``buf``, ``size``;
``AVCodecContext`` -> ``av``, ``codec``, ``context``; lower-cased, hashed like whole tokens, 0 =
none). Real code (Devign's FFmpeg/QEMU) is full of project-specific names that a whole-name bucket
only memorises; their pieces recur across projects and functions.

Edges (directed; ids are positions in the config's canonical edge_types, reverse = id + n):
  ast  parent -> child over kept nodes.
  ncs  leaf -> next leaf in source order.
  cfg  between statement nodes. An if/while/for/do/switch is represented by its condition node;
       a ``for(;;)`` without condition by the for node, a range-for by its range expression.
       Sequence, cond -> then / else (or -> next), loop cond -> body, body end -> cond (through
       the update in a ``for``), cond -> after loop, ``do`` body -> cond -> body, switch cond ->
       each case (-> after the switch when there is no default), case fall-through, break ->
       after loop/switch, continue -> loop cond (or update), return/throw -> the function node
       (the exit; falling off the end also goes there), goto -> labeled statement, try -> body
       and each catch body. ``#if``/``#ifdef`` inside a body branch like an ``if``.
       A ``break`` / ``continue`` outside any loop the parser saw (a macro loop such as
       ``QTAILQ_FOREACH(...) { ... }``) falls through to the next statement.
  dfg  identifier that defines a variable -> the identifiers that read it and that the definition
       reaches. Definitions: declarators (with or without initialiser), parameters, range-for
       variables, assignment targets (``x = ``; ``x += `` also reads x; writes through a name,
       ``a[i] =``, ``*p =``, ``s->f =``, ``s->buf[i] =``, ``(*p) =``, define and read the base
       name), ``++``/``--`` (also ``s->n++``). A definition takes effect after its whole assignment
       / init-declarator, so ``x = x + 1`` reads the previous x. Reaching definitions over the CFG
       above: a use reads every definition of its name with a path to it that no other definition
       of the name cuts (both branches' values after an if/else, the loop's own update in the
       next iteration's condition and body, nothing from a branch that left by ``goto`` /
       ``return``); parameters are defined before the first statement. Names have no scopes (a
       shadowing inner variable is the same name), and a loop's update reaching its own read
       gives a self loop (``i++`` -> ``i++``).
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
import statistics as _statistics
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tree_sitter
import tree_sitter_c
import tree_sitter_cpp
from torch_geometric.data import Data
from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
from torch_geometric.data.storage import GlobalStorage

from streamguard_pl.errors import InputError
from streamguard_pl.jsonsafe import atomic_open

__all__ = [
    "BUILDER_VERSION",
    "EDGE_TYPES",
    "NODE_TYPES",
    "GraphConfig",
    "GraphBuildError",
    "GraphBuilder",
    "GraphBuildStats",
    "build_graphs",
    "builder_identity",
    "load_pt_graphs",
    "graph_statistics",
    "subwords",
]

# Bump when the graphs produced for the same input change: it is part of every cache key.
BUILDER_VERSION = "2"  # 2: reaching-definition data flow
EDGE_TYPES: tuple[str, ...] = ("ast", "ncs", "cfg", "dfg")
# `token_buckets` that makes a leaf's token id its text's crc32 + 2 (no modulo): what a fitted
# vocabulary (data/vocab.py) maps to dense ids.
RAW_TOKEN_IDS = 2**32 + 2
LANGS = ("c", "cpp")
_LANG_ALIASES = {"c": "c", "cpp": "cpp", "c++": "cpp", "cxx": "cpp", "cc": "cpp"}

_LANGUAGES = {"c": tree_sitter.Language(tree_sitter_c.language()),
              "cpp": tree_sitter.Language(tree_sitter_cpp.language())}
_ERROR_KIND = 0xFFFF  # tree-sitter's ts_builtin_sym_error


def _named_kinds(lang: tree_sitter.Language) -> set[str]:
    return {
        lang.node_kind_for_id(k)
        for k in range(lang.node_kind_count)
        if lang.node_kind_is_named(k) and lang.node_kind_is_visible(k)
    }


# Sorted, so ids are stable without a saved vocabulary (they change only with the grammar versions,
# which are part of GraphConfig.fingerprint()).
NODE_TYPES: tuple[str, ...] = tuple(sorted(
    _named_kinds(_LANGUAGES["c"]) | _named_kinds(_LANGUAGES["cpp"]) | {"ERROR", "<anon>", "<unk>"}
))
_TYPE_ID = {name: i for i, name in enumerate(NODE_TYPES)}
_T = _TYPE_ID.__getitem__
T_ANON, T_UNK, T_ERROR = _T("<anon>"), _T("<unk>"), _T("ERROR")
T_IDENT, T_LABEL_ID, T_FUNC = _T("identifier"), _T("statement_identifier"), _T("function_definition")
T_ASSIGN, T_UPDATE = _T("assignment_expression"), _T("update_expression")
T_INIT_DECL, T_REF_DECL = _T("init_declarator"), _T("reference_declarator")
_DECL_CHAIN = {_T(k) for k in ("init_declarator", "pointer_declarator", "array_declarator",
                               "parenthesized_declarator", "reference_declarator", "attributed_declarator")}
# Parents under which an identifier in the `declarator` field is a declared variable name.
_DECL_PARENTS = _DECL_CHAIN | {_T(k) for k in ("declaration", "parameter_declaration",
                                              "optional_parameter_declaration", "for_range_loop")}
_TO_EXIT = {_T("return_statement"), _T("throw_statement")}
_LVALUE_BASES = {_T(k) for k in ("subscript_expression", "pointer_expression", "field_expression")}
# Nodes whose children the CFG pass needs.
_CFG_KINDS = (
    "translation_unit", "function_definition", "compound_statement", "if_statement", "else_clause",
    "for_statement", "for_range_loop", "while_statement", "do_statement", "switch_statement",
    "case_statement", "labeled_statement", "goto_statement", "try_statement", "catch_clause", "ERROR", "preproc_if",
    "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef",
)
_STRUCT = [False] * len(NODE_TYPES)
for _k in _CFG_KINDS:
    _STRUCT[_T(_k)] = True
# What counts as a statement inside an ERROR node (ERROR is then a transparent sequence).
_STMT_TYPES = {i for i, k in enumerate(NODE_TYPES) if k.endswith("_statement")} | {
    _T(k) for k in ("declaration", "type_definition", "for_range_loop", "preproc_if", "preproc_ifdef",
                    "preproc_call", "ERROR")}

_FIELDS = ("alternative", "argument", "body", "condition", "consequence", "declarator", "initializer",
           "label", "left", "name", "operator", "right", "update", "value")
F_ALT, F_ARG, F_BODY, F_COND, F_CONS, F_DECL, F_INIT, F_LABEL, F_LEFT, F_NAME, F_OP, F_RIGHT, F_UPDATE, \
    F_VALUE = range(1, len(_FIELDS) + 1)

# Anonymous tokens that are pure punctuation; every other anonymous token is kept as a leaf.
_PUNCT = {"(", ")", "{", "}", "[", "]", "[[", "]]", ";", ",", ":", "::", "...", "\n"}
_ATOMIC = {"string_literal", "char_literal", "raw_string_literal", "system_lib_string", "user_defined_literal"}
_SKIP_NAMED = {"comment"}
_SKIP, _KEEP, _ATOM = 0, 1, 2


class _Grammar:
    """Per-language lookup tables indexed by tree-sitter kind / field id (lists: fastest lookup)."""

    def __init__(self, name: str) -> None:
        lang = _LANGUAGES[name]
        self.name = name
        self.language = lang
        self.ttype = [T_UNK] * (_ERROR_KIND + 1)
        self.flag = [_SKIP] * (_ERROR_KIND + 1)
        for k in range(lang.node_kind_count):
            kind = lang.node_kind_for_id(k)
            if not lang.node_kind_is_visible(k):
                continue
            if lang.node_kind_is_named(k):
                self.ttype[k] = _TYPE_ID.get(kind, T_UNK)
                self.flag[k] = _SKIP if kind in _SKIP_NAMED else _ATOM if kind in _ATOMIC else _KEEP
            else:
                self.ttype[k] = T_ANON
                is_quote = kind.endswith('"') or kind.endswith("'")
                self.flag[k] = _SKIP if kind in _PUNCT or is_quote or not kind.strip() else _ATOM
        self.ttype[_ERROR_KIND], self.flag[_ERROR_KIND] = T_ERROR, _KEEP
        self.ftab = [0] * (lang.field_count + 1)
        for f in range(1, lang.field_count + 1):
            fname = lang.field_name_for_id(f)
            self.ftab[f] = _FIELDS.index(fname) + 1 if fname in _FIELDS else 0
        self.error_query = tree_sitter.Query(lang, "(ERROR) @e (MISSING) @m")


_GRAMMARS = {name: _Grammar(name) for name in LANGS}


def _grammar_versions() -> dict[str, str]:
    out = {}
    for pkg in ("tree-sitter", "tree-sitter-c", "tree-sitter-cpp"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


_GRAMMAR_VERSIONS = _grammar_versions()


class GraphBuildError(InputError, ValueError):
    """A function that cannot become a graph (empty, no code, nesting too deep)."""


@dataclass(frozen=True)
class GraphConfig:
    """What a graph contains; every field is part of the cache key.

    ``edge_types`` is stored in EDGE_TYPES order whatever order it was given in, so the same set
    always gets the same ids (0..n-1; reverse copies n..2n-1) and ids stay below num_edge_types.
    """

    edge_types: tuple[str, ...] = EDGE_TYPES
    reverse_edges: bool = False
    max_nodes: int | None = 1000
    token_buckets: int = 50_000
    lang: str = "auto"
    subtokens: int = 0

    def __post_init__(self) -> None:
        given = tuple(self.edge_types) if not isinstance(self.edge_types, str) else (self.edge_types,)
        unknown = [e for e in given if e not in EDGE_TYPES]
        if unknown or not given or len(set(given)) != len(given):
            raise ValueError(f"edge_types must be distinct names from {EDGE_TYPES} (at least one); got {given!r}")
        object.__setattr__(self, "edge_types", tuple(e for e in EDGE_TYPES if e in given))
        if self.max_nodes is not None and (isinstance(self.max_nodes, bool) or int(self.max_nodes) < 1):
            raise ValueError(f"max_nodes must be a positive int or None, got {self.max_nodes!r}")
        if isinstance(self.token_buckets, bool) or int(self.token_buckets) < 3:
            raise ValueError(f"token_buckets must be >= 3 (0 = no token, 1 = unknown), got {self.token_buckets!r}")
        if self.lang not in ("auto", *LANGS):
            raise ValueError(f"lang must be 'auto', 'c' or 'cpp', got {self.lang!r}")
        if isinstance(self.subtokens, bool) or not isinstance(self.subtokens, int) or self.subtokens < 0:
            raise ValueError(f"subtokens must be an int >= 0 (0 = whole tokens only), got {self.subtokens!r}")

    @property
    def num_edge_types(self) -> int:
        return len(self.edge_types) * (2 if self.reverse_edges else 1)

    @property
    def edge_type_names(self) -> list[str]:
        """Name of each edge_type id: the families, then ``<family>_rev`` for reverse copies."""
        names = list(self.edge_types)
        return names + [f"{e}_rev" for e in names] if self.reverse_edges else names

    def fingerprint(self) -> str:
        """Changes whenever the graphs for the same input could change (settings, code, grammars)."""
        config = asdict(self)
        if not self.subtokens:  # caches built before sub-tokens existed stay valid
            del config["subtokens"]
        payload = {"config": config, **_builder_payload()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _builder_payload() -> dict[str, Any]:
    return {
        "builder_version": BUILDER_VERSION,
        "node_types": hashlib.sha256("\n".join(NODE_TYPES).encode()).hexdigest(),
        "grammars": _GRAMMAR_VERSIONS,
    }


def builder_identity() -> str:
    """What, besides a GraphConfig, decides a text's graph (builder version, node types, grammars): a
    study redoes a completed run whose graphs another builder made."""
    digest = hashlib.sha256(json.dumps(_builder_payload(), sort_keys=True).encode()).hexdigest()
    return f"{BUILDER_VERSION}-{digest[:12]}"


def _normalize_lang(lang: str | None) -> str | None:
    if lang is None or lang == "":
        return None
    norm = _LANG_ALIASES.get(str(lang).lower())
    if norm is None:
        raise GraphBuildError(f"unknown lang {lang!r} (expected 'c' or 'cpp')")
    return norm


class _Walk:
    """Flat lists recorded by the single cursor pass (index = pre-order id of a kept node)."""

    __slots__ = ("types", "fields", "parents", "toks", "last", "leaves", "idents", "labels", "funcs", "kids",
                 "assign_op", "texts")


def _walk(tree: tree_sitter.Tree, src: bytes, g: _Grammar, buckets: int, spans: list | None = None,
          texts: list | None = None) -> _Walk:
    # The hot loop: bound methods and locals only, no per-node objects beyond tree-sitter's own.
    ttab, flag, ftab, struct = g.ttype, g.flag, g.ftab, _STRUCT
    m = buckets - 2
    crc = zlib.crc32
    types: list[int] = []
    fields: list[int] = []
    parents: list[int] = []
    toks: list[int] = []
    last: list[int] = []          # last pre-order id inside each node's subtree
    leaves: list[int] = []
    idents: list[tuple[int, bytes]] = []
    labels: dict[int, bytes] = {}
    funcs: list[int] = []
    kids: dict[int, list[int]] = {}
    assign_op: dict[int, bytes] = {}
    stack: list[int] = []
    kstack: list[list[int] | None] = []
    add_type, add_field, add_parent, add_tok, add_last = (
        types.append, fields.append, parents.append, toks.append, last.append)
    add_leaf, push, kpush, pop, kpop = leaves.append, stack.append, kstack.append, stack.pop, kstack.pop
    parent, plist = -1, None
    n = 0
    cur = tree.walk()
    first_child, next_sibling, up = cur.goto_first_child, cur.goto_next_sibling, cur.goto_parent
    while True:
        node = cur.node
        fl = flag[node.kind_id]
        if fl:
            i = n
            n += 1
            t = ttab[node.kind_id]
            add_type(t)
            add_parent(parent)
            fid = cur.field_id
            add_field(ftab[fid] if fid else 0)
            add_last(i)
            if spans is not None:
                spans.append(node.byte_range)
            if plist is not None:
                plist.append(i)
            if fl == _KEEP and first_child():
                add_tok(0)
                if t == T_FUNC:
                    funcs.append(i)
                push(parent)
                kpush(plist)
                parent = i
                if struct[t]:
                    plist = kids[i] = []
                else:
                    plist = None
                continue
            text = src[node.start_byte:node.end_byte]  # cheaper than node.text
            add_tok(crc(text) % m + 2 if text else 1)
            add_leaf(i)
            if texts is not None:
                texts.append(text)
            if t == T_IDENT:
                idents.append((i, text))
            elif t == T_ANON:
                if parent >= 0 and types[parent] == T_ASSIGN:
                    assign_op[parent] = text
            elif t == T_LABEL_ID:
                labels[i] = text
        while not next_sibling():
            if not up():
                w = _Walk()
                w.types, w.fields, w.parents, w.toks, w.last = types, fields, parents, toks, last
                w.leaves, w.idents, w.labels, w.funcs, w.kids, w.assign_op = (
                    leaves, idents, labels, funcs, kids, assign_op)
                w.texts = texts
                return w
            last[parent] = n - 1
            parent = pop()
            plist = kpop()


_SUBWORD = re.compile(rb"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def subwords(text: bytes) -> list[bytes]:
    """Lower-cased pieces of an identifier (snake_case, camelCase, digits); [] when it has one piece."""
    pieces = _SUBWORD.findall(text)
    return [p.lower() for p in pieces] if len(pieces) > 1 else []


def _subtoken_columns(w: _Walk, n: int, k: int, buckets: int) -> np.ndarray:
    cols = np.zeros((n, k), dtype=np.int64)
    m = buckets - 2
    crc = zlib.crc32
    for i, text in zip(w.leaves, w.texts):
        pieces = subwords(text)[:k]
        if pieces:
            cols[i, : len(pieces)] = [crc(p) % m + 2 for p in pieces]
    return cols


_PARENS = _T("parenthesized_expression")


def _lvalue_scope(i: int, w: _Walk) -> int:
    """The assignment or ++/-- that writes through identifier i (``x =``, ``s->buf[i] =``,
    ``*(p) =``, ``s->n++``: the base name of the written object), else -1."""
    types, fields, parents = w.types, w.fields, w.parents
    q = i
    while True:
        p = parents[q]
        if p < 0:
            return -1
        pt = types[p]
        if pt == T_ASSIGN:
            return p if fields[q] == F_LEFT else -1
        if pt == T_UPDATE:
            return p
        if not ((pt in _LVALUE_BASES and fields[q] == F_ARG) or pt == _PARENS):
            return -1
        q = p


def _dfg(w: _Walk, flow: _CFG) -> tuple[list[int], list[int]]:
    """Reaching definitions over the statement-level CFG: def -> every use it can reach (module doc)."""
    types, fields, parents, last = w.types, w.fields, w.parents, w.last
    nodes = set(flow.src) | set(flow.dst) | set(flow.entries.values())
    succ: dict[int, list[int]] = {}
    for a, b in zip(flow.src, flow.dst):
        succ.setdefault(a, []).append(b)
    for f, entry in flow.entries.items():  # parameters are defined at a virtual node before the body
        succ.setdefault(-2 - f, []).extend([entry] if entry >= 0 else [])
    # events[node]: (position, 0 = use / 1 = def, identifier, name), in the order they happen
    events: dict[int, list[tuple[int, int, int, bytes]]] = {}
    owner_of: dict[int, int] = {}
    for i, name in w.idents:
        q, path = i, []
        while q >= 0 and q not in nodes and q not in owner_of:
            path.append(q)
            q = parents[q]
        owner = owner_of.get(q, q) if q >= 0 else -1
        for p in path:
            owner_of[p] = owner
        if owner >= 0 and types[owner] == T_FUNC and i < flow.body_of.get(owner, i + 1):
            owner = -2 - owner  # in the function's declarator: a parameter (or the function's name)
        p = parents[i]
        pt = types[p]
        evs = events.setdefault(owner, [])
        if pt in _DECL_PARENTS and (fields[i] == F_DECL or pt == T_REF_DECL):
            q = p
            while types[q] in _DECL_CHAIN and types[q] != T_INIT_DECL:
                q = parents[q]
            evs.append((last[q] if types[q] == T_INIT_DECL else i, 1, i, name))
            continue
        scope = _lvalue_scope(i, w)
        if scope < 0 or not (types[scope] == T_ASSIGN and w.assign_op.get(scope) == b"=" and
                             fields[i] == F_LEFT and parents[i] == scope):
            evs.append((i, 0, i, name))  # a read (compound assignments, ++ and writes through x read x too)
        if scope >= 0:
            evs.append((last[scope], 1, i, name))
    # Bit k stands for the k-th definition; what reaches a node is one int (a bitset).
    def_ids: list[int] = []
    name_mask: dict[bytes, int] = {}
    gen: dict[int, int] = {}
    defined: dict[int, tuple[bytes, ...]] = {}
    for node, evs in events.items():
        evs.sort()
        last_def: dict[bytes, int] = {}
        for _, kind, i, name in evs:
            if kind == 1:
                bit = 1 << len(def_ids)
                def_ids.append(i)
                name_mask[name] = name_mask.get(name, 0) | bit
                last_def[name] = bit
        gen[node] = sum(last_def.values())
        defined[node] = tuple(last_def)
    # a node kills every definition of a name it defines (the masks are complete only now)
    kill = {node: sum(name_mask[n] for n in names) for node, names in defined.items()}
    # Iterate to the fixed point: what reaches a node is the union of what leaves its predecessors.
    reach_in: dict[int, int] = {}
    work = sorted(set(succ) | set(events), reverse=True)
    queued = set(work)
    while work:
        node = work.pop()
        queued.discard(node)
        out = gen.get(node, 0) | (reach_in.get(node, 0) & ~kill.get(node, 0))
        for nxt in succ.get(node, ()):
            old = reach_in.get(nxt, 0)
            if out & ~old:
                reach_in[nxt] = old | out
                if nxt not in queued:
                    queued.add(nxt)
                    work.append(nxt)
    src: list[int] = []
    dst: list[int] = []
    for node, evs in events.items():
        local: dict[bytes, int] = {}
        incoming = reach_in.get(node, 0)
        for _, kind, i, name in evs:
            if kind == 1:
                local[name] = i
            elif name in local:
                src.append(local[name])
                dst.append(i)
            else:
                bits = incoming & name_mask.get(name, 0)
                reaching = []
                while bits:
                    low = bits & -bits
                    reaching.append(def_ids[low.bit_length() - 1])
                    bits ^= low
                for d in sorted(reaching):  # by node id: the same edge order however bits were numbered
                    src.append(d)
                    dst.append(i)
    return src, dst


class _CFG:
    """Statement-level control flow over the recorded tree (see module doc for the rules)."""

    def __init__(self, w: _Walk) -> None:
        self.w = w
        self.src: list[int] = []
        self.dst: list[int] = []
        self.exit = -1
        self.brk: list[int] | None = None
        self.cont = -1
        self.gotos: list[tuple[int, bytes]] = []
        self.label_at: dict[bytes, int] = {}
        self.entries: dict[int, int] = {}   # exit (function) node -> its first statement (-1: none)
        self.body_of: dict[int, int] = {}   # function node -> its body's id (what comes before is its declarator)

    def run(self) -> tuple[list[int], list[int]]:
        w = self.w
        if w.funcs:
            for f in w.funcs:
                body = self.child(f, F_BODY)
                if body >= 0:
                    self.body_of[f] = body
                    self.function(f, [body])
        elif w.types and 0 in w.kids:
            self.function(0, w.kids[0])
        return self.src, self.dst

    def function(self, exit_node: int, items: list[int]) -> None:
        self.exit, self.brk, self.cont, self.gotos, self.label_at = exit_node, None, -1, [], {}
        entry, exits = self.seq(items)
        self.entries[exit_node] = entry
        self.link(exits, exit_node)
        for node, name in self.gotos:
            target = self.label_at.get(name)
            if target is not None:
                self.edge(node, target)

    # helpers -------------------------------------------------------------------------------
    def edge(self, a: int, b: int) -> None:
        self.src.append(a)
        self.dst.append(b)

    def link(self, exits: list[int], b: int) -> None:
        for a in exits:
            self.src.append(a)
            self.dst.append(b)

    def child(self, p: int, fid: int) -> int:
        fields = self.w.fields
        for c in self.w.kids.get(p, ()):
            if fields[c] == fid:
                return c
        return -1

    def body_items(self, p: int, exclude: tuple[int, ...] = ()) -> list[int]:
        """Kept named children that are not in one of the excluded fields (the statements)."""
        types, fields = self.w.types, self.w.fields
        return [c for c in self.w.kids.get(p, ()) if types[c] != T_ANON and fields[c] not in exclude]

    def seq(self, items: Iterable[int]) -> tuple[int, list[int]]:
        entry, exits = -1, []
        for c in items:
            en, ex = self.stmt(c)
            if en < 0:
                continue
            if entry < 0:
                entry = en
            else:
                self.link(exits, en)
            exits = ex
        return entry, exits

    def branch(self, head: int, stmt: int, exits: list[int]) -> None:
        """head -> stmt's entry, its exits added to ``exits``; an empty or absent stmt falls through."""
        en, ex = self.stmt(stmt) if stmt >= 0 else (-1, [])
        if en < 0:
            exits.append(head)
        else:
            self.edge(head, en)
            exits.extend(ex)

    def loop_body(self, head: int, body: int, cont: int) -> tuple[int, list[int], list[int]]:
        saved = self.brk, self.cont
        self.brk, self.cont = [], cont
        en, ex = self.stmt(body) if body >= 0 else (-1, [])
        breaks = self.brk
        self.brk, self.cont = saved
        return en, ex, breaks

    # statements ----------------------------------------------------------------------------
    def stmt(self, i: int) -> tuple[int, list[int]]:
        t = self.w.types[i]
        name = NODE_TYPES[t]
        handler = getattr(self, "s_" + name, None)
        if handler is not None:
            return handler(i)
        if t in _TO_EXIT:
            self.edge(i, self.exit)
            return i, []
        return i, [i]

    def s_compound_statement(self, i: int) -> tuple[int, list[int]]:
        return self.seq(self.body_items(i))

    def s_ERROR(self, i: int) -> tuple[int, list[int]]:
        items = [c for c in self.body_items(i) if self.w.types[c] in _STMT_TYPES]
        if not items:
            return i, [i]
        return self.seq(items)

    def s_if_statement(self, i: int) -> tuple[int, list[int]]:
        cond = self.child(i, F_COND)
        cond = cond if cond >= 0 else i
        exits: list[int] = []
        self.branch(cond, self.child(i, F_CONS), exits)
        alt = self.child(i, F_ALT)
        if alt >= 0 and self.w.types[alt] == _T("else_clause"):
            inner = self.body_items(alt)
            alt = inner[0] if inner else -1
        self.branch(cond, alt, exits)
        return cond, list(dict.fromkeys(exits))  # two empty branches: one edge on, not two

    def s_while_statement(self, i: int) -> tuple[int, list[int]]:
        cond = self.child(i, F_COND)
        cond = cond if cond >= 0 else i
        en, ex, breaks = self.loop_body(cond, self.child(i, F_BODY), cond)
        if en >= 0:
            self.edge(cond, en)
            self.link(ex, cond)
        return cond, [cond, *breaks]

    def s_do_statement(self, i: int) -> tuple[int, list[int]]:
        cond = self.child(i, F_COND)
        cond = cond if cond >= 0 else i
        en, ex, breaks = self.loop_body(cond, self.child(i, F_BODY), cond)
        if en < 0:
            return cond, [cond, *breaks]
        self.link(ex, cond)
        self.edge(cond, en)
        return en, [cond, *breaks]

    def s_for_statement(self, i: int) -> tuple[int, list[int]]:
        init, cond, update = self.child(i, F_INIT), self.child(i, F_COND), self.child(i, F_UPDATE)
        head = cond if cond >= 0 else i
        cont = update if update >= 0 else head
        en, ex, breaks = self.loop_body(head, self.child(i, F_BODY), cont)
        if en >= 0:
            self.edge(head, en)
            self.link(ex, cont)
        elif cont != head:
            self.edge(head, cont)  # empty body: straight to the update
        if update >= 0:
            self.edge(update, head)
        if init >= 0:
            self.edge(init, head)
        return (init if init >= 0 else head), ([cond] if cond >= 0 else []) + breaks

    def s_for_range_loop(self, i: int) -> tuple[int, list[int]]:
        head = self.child(i, F_RIGHT)
        head = head if head >= 0 else i
        en, ex, breaks = self.loop_body(head, self.child(i, F_BODY), head)
        if en >= 0:
            self.edge(head, en)
            self.link(ex, head)
        return head, [head, *breaks]

    def s_switch_statement(self, i: int) -> tuple[int, list[int]]:
        cond = self.child(i, F_COND)
        cond = cond if cond >= 0 else i
        body = self.child(i, F_BODY)
        saved = self.brk
        self.brk = []
        exits: list[int] = []
        has_default = False
        for c in self.body_items(body) if body >= 0 else ():
            if self.w.types[c] == _T("case_statement"):
                self.edge(cond, c)
                has_default |= self.child(c, F_VALUE) < 0
            en, ex = self.stmt(c)
            if en >= 0:
                self.link(exits, en)  # fall-through from the previous case
                exits = ex
        breaks = self.brk
        self.brk = saved
        return cond, exits + breaks + ([] if has_default else [cond])

    def s_case_statement(self, i: int) -> tuple[int, list[int]]:
        en, ex = self.seq(self.body_items(i, (F_VALUE,)))
        if en < 0:
            return i, [i]
        self.edge(i, en)
        return i, ex

    def s_labeled_statement(self, i: int) -> tuple[int, list[int]]:
        label = self.child(i, F_LABEL)
        if label >= 0 and label in self.w.labels:
            self.label_at[self.w.labels[label]] = i
        en, ex = self.seq(self.body_items(i, (F_LABEL,)))
        if en < 0:
            return i, [i]
        self.edge(i, en)
        return i, ex

    def s_goto_statement(self, i: int) -> tuple[int, list[int]]:
        label = self.child(i, F_LABEL)
        if label >= 0 and label in self.w.labels:
            self.gotos.append((i, self.w.labels[label]))
        return i, []

    def s_break_statement(self, i: int) -> tuple[int, list[int]]:
        if self.brk is None:  # in a loop the parser did not see (a macro like QTAILQ_FOREACH): go on
            return i, [i]
        self.brk.append(i)
        return i, []

    def s_continue_statement(self, i: int) -> tuple[int, list[int]]:
        if self.cont < 0:
            return i, [i]
        self.edge(i, self.cont)
        return i, []

    def s_try_statement(self, i: int) -> tuple[int, list[int]]:
        exits: list[int] = []
        self.branch(i, self.child(i, F_BODY), exits)
        for c in self.body_items(i, (F_BODY,)):
            if self.w.types[c] == _T("catch_clause"):
                self.branch(i, self.child(c, F_BODY), exits)
        return i, exits

    def s_preproc_if(self, i: int) -> tuple[int, list[int]]:
        exits: list[int] = []
        en, ex = self.seq(self.body_items(i, (F_COND, F_NAME, F_ALT)))
        if en < 0:
            exits.append(i)
        else:
            self.edge(i, en)
            exits.extend(ex)
        self.branch(i, self.child(i, F_ALT), exits)
        return i, exits

    s_preproc_ifdef = s_preproc_elif = s_preproc_elifdef = s_preproc_if

    def s_preproc_else(self, i: int) -> tuple[int, list[int]]:
        return self.seq(self.body_items(i))


def make_parsers() -> dict[str, tree_sitter.Parser]:
    """One parser per grammar (C objects: each builder or worker makes its own)."""
    return {name: tree_sitter.Parser(_LANGUAGES[name]) for name in LANGS}


def count_errors(tree: tree_sitter.Tree, lang: str) -> int:
    """ERROR and MISSING nodes of a tree: how badly a grammar fits the text."""
    if not tree.root_node.has_error:
        return 0
    caps = tree_sitter.QueryCursor(_GRAMMARS[lang].error_query).captures(tree.root_node)
    return sum(len(v) for v in caps.values())


def parse_either(parsers: dict[str, tree_sitter.Parser], src: bytes) -> tuple[tree_sitter.Tree, str, int]:
    """Tree, grammar and error count of text whose language is unknown (`lang: auto`, a `.h` file).

    C first, as most such text is C; C++ is tried only where C's tree has errors and kept where it
    has fewer (namespaces, classes and templates are errors to the C grammar).
    """
    tree = parsers["c"].parse(src)
    if not tree.root_node.has_error:
        return tree, "c", 0
    n_c = count_errors(tree, "c")
    tree_cpp = parsers["cpp"].parse(src)
    n_cpp = count_errors(tree_cpp, "cpp")
    return (tree_cpp, "cpp", n_cpp) if n_cpp < n_c else (tree, "c", n_c)


class GraphBuilder:
    """Turns one function's source into a typed PyG graph (see the module doc for nodes and edges)."""

    def __init__(self, config: GraphConfig = GraphConfig()) -> None:
        self.config = config
        self._parsers = make_parsers()
        fams = config.edge_types
        self._family_id = {name: k for k, name in enumerate(fams)}

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}  # parsers are C objects: rebuilt after unpickling (workers)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])

    # parsing -----------------------------------------------------------------------------------
    def _parse(self, func: str, lang: str | None) -> tuple[tree_sitter.Tree, bytes, str, int]:
        if not isinstance(func, str):
            raise GraphBuildError(f"func must be a str, got {type(func).__name__}")
        if not func.strip():
            raise GraphBuildError("empty function (no source text)")
        src = func.encode("utf-8", "surrogatepass")
        chosen = self.config.lang if self.config.lang != "auto" else _normalize_lang(lang)
        if chosen is not None:
            tree = self._parsers[chosen].parse(src)
            return tree, src, chosen, count_errors(tree, chosen)
        tree, chosen, n_errors = parse_either(self._parsers, src)
        return tree, src, chosen, n_errors

    def parse(self, func: str, lang: str | None = None) -> tree_sitter.Tree:
        """The tree ``build`` would use (same language choice): the floor the benchmark compares to."""
        return self._parse(func, lang)[0]

    def describe(self, func: str, lang: str | None = None) -> list[tuple[str, str]]:
        """(node type, source text) for each node id of ``build(func, lang)``: to read or test a graph."""
        tree, src, chosen, _ = self._parse(func, lang)
        spans: list[tuple[int, int]] = []
        w = _walk(tree, src, _GRAMMARS[chosen], self.config.token_buckets, spans)
        cap = self.config.max_nodes or len(spans)
        return [(NODE_TYPES[t], src[a:b].decode("utf-8", "replace")) for t, (a, b) in zip(w.types[:cap], spans)]

    # building ----------------------------------------------------------------------------------
    def build(self, func: str, lang: str | None = None) -> Data:
        tree, src, chosen, n_errors = self._parse(func, lang)
        k = self.config.subtokens
        w = _walk(tree, src, _GRAMMARS[chosen], self.config.token_buckets, texts=[] if k else None)
        n = len(w.types)
        if n <= 1:
            raise GraphBuildError("no code in function (only comments or punctuation)")
        fam = self._family_id
        srcs: list[int] = []
        dsts: list[int] = []
        etypes: list[int] = []
        if "ast" in fam:
            srcs += w.parents[1:]
            dsts += range(1, n)
            etypes += [fam["ast"]] * (n - 1)
        if "ncs" in fam:
            lv = w.leaves
            srcs += lv[:-1]
            dsts += lv[1:]
            etypes += [fam["ncs"]] * max(len(lv) - 1, 0)
        if "cfg" in fam or "dfg" in fam:  # data flow follows the control flow
            flow = _CFG(w)
            try:
                flow.run()
            except RecursionError:
                raise GraphBuildError("statements nested too deeply for the CFG pass") from None
        if "cfg" in fam:
            srcs += flow.src
            dsts += flow.dst
            etypes += [fam["cfg"]] * len(flow.src)
        if "dfg" in fam:
            s, d = _dfg(w, flow)
            srcs += s
            dsts += d
            etypes += [fam["dfg"]] * len(s)
        # numpy is ~4x faster than torch.tensor at list conversion; edge_index/edge_type share a buffer.
        n_edges = len(etypes)
        srcs += dsts
        srcs += etypes
        flat = torch.from_numpy(np.array(srcs, dtype=np.int64))
        edge_index, edge_type = flat[: 2 * n_edges].view(2, n_edges), flat[2 * n_edges:]
        if self.config.reverse_edges:
            edge_index = torch.cat((edge_index, edge_index.flip(0)), 1)
            edge_type = torch.cat((edge_type, edge_type + len(fam)))
        x = np.array((w.types, w.toks), dtype=np.int64).T
        if k:
            x = np.concatenate((x, _subtoken_columns(w, n, k, self.config.token_buckets)), axis=1)
        x = torch.from_numpy(np.ascontiguousarray(x))  # copies only the transposed view
        truncated = 0
        cap = self.config.max_nodes
        if cap is not None and n > cap:
            keep = (edge_index < cap).all(0)
            edge_index, edge_type, x, n, truncated = edge_index[:, keep], edge_type[keep], x[:cap], cap, 1
        return Data(x=x, edge_index=edge_index, edge_type=edge_type, num_nodes=n,
                    num_error_nodes=n_errors, truncated=truncated, lang=chosen)


# ------------------------------------------------------------------------------------- many graphs


@dataclass
class GraphBuildStats:
    """Counters of one build_graphs call (restored from the cache on a hit, with cache_hit=True)."""

    built: int = 0
    failed: list[dict] = field(default_factory=list)   # {"id", "source", "reason"} per failed record
    truncated: int = 0
    error_nodes: int = 0
    graphs_with_errors: int = 0
    edge_type_names: list[str] = field(default_factory=lambda: list(EDGE_TYPES))
    cache_file: str | None = None
    cache_hit: bool = False

    def add(self, g: Data) -> None:
        self.built += 1
        self.truncated += int(g.truncated)
        self.error_nodes += int(g.num_error_nodes)
        self.graphs_with_errors += int(g.num_error_nodes > 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_failed"] = len(self.failed)
        return d


def _records_fingerprint(records: Sequence[Any]) -> str:
    """sha256 over (id, target, lang, func) in order: everything a graph or its label depends on."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([str(r.id), int(r.target), getattr(r, "lang", None), r.func],
                            ensure_ascii=False).encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()


_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CACHE_FORMAT = 1


def _pack(graphs: list[Data], stats: GraphBuildStats) -> dict[str, Any]:
    """Concatenated plain tensors (like PyG's InMemoryDataset): fast to save and weights_only-safe."""
    nodes = [g.num_nodes for g in graphs]
    edges = [g.edge_index.size(1) for g in graphs]
    cat = torch.cat
    return {
        "format": _CACHE_FORMAT,
        "x": cat([g.x for g in graphs]) if graphs else torch.zeros((0, 2), dtype=torch.long),
        "edge_index": cat([g.edge_index for g in graphs], 1) if graphs else torch.zeros((2, 0), dtype=torch.long),
        "edge_type": cat([g.edge_type for g in graphs]) if graphs else torch.zeros((0,), dtype=torch.long),
        "node_ptr": torch.tensor([0, *np.cumsum(nodes).tolist()], dtype=torch.long),
        "edge_ptr": torch.tensor([0, *np.cumsum(edges).tolist()], dtype=torch.long),
        "y": torch.tensor([int(g.y.view(-1)[0]) for g in graphs], dtype=torch.long),
        "num_error_nodes": torch.tensor([int(g.num_error_nodes) for g in graphs], dtype=torch.long),
        "truncated": torch.tensor([int(g.truncated) for g in graphs], dtype=torch.long),
        "lang": [g.lang for g in graphs],
        "rid": [g.rid for g in graphs],
        "stats": stats.to_dict(),
    }


def _unpack(blob: dict[str, Any]) -> tuple[list[Data], GraphBuildStats]:
    if blob.get("format") != _CACHE_FORMAT:
        raise ValueError(f"unknown cache format {blob.get('format')!r}")
    x, ei, et = blob["x"], blob["edge_index"], blob["edge_type"]
    nptr, eptr = blob["node_ptr"].tolist(), blob["edge_ptr"].tolist()
    y, nerr, trunc = blob["y"], blob["num_error_nodes"].tolist(), blob["truncated"].tolist()
    graphs = []
    for k, (rid, lang) in enumerate(zip(blob["rid"], blob["lang"])):
        a, b, c, d = nptr[k], nptr[k + 1], eptr[k], eptr[k + 1]
        graphs.append(Data(x=x[a:b], edge_index=ei[:, c:d], edge_type=et[c:d], num_nodes=b - a, y=y[k:k + 1],
                           rid=rid, num_error_nodes=nerr[k], truncated=trunc[k], lang=lang))
    st = dict(blob["stats"])
    st.pop("n_failed", None)
    return graphs, GraphBuildStats(**st)


def _failure_error(split_name: str, failed: dict) -> GraphBuildError:
    where = failed.get("source") or f"split {split_name!r}"
    return GraphBuildError(f"{where}: record {failed.get('id')!r}: {failed.get('reason')}")


def build_graphs(
    records: Sequence[Any],
    builder: GraphBuilder,
    on_error: Literal["raise", "skip"] = "raise",
    cache_dir: str | os.PathLike | None = None,
    split_name: str = "data",
) -> tuple[list[Data], GraphBuildStats]:
    """Graphs (with ``y`` and ``rid``) for records in order; failures raise or are counted in stats.failed.

    The cache file is keyed on the records' content and the builder's config fingerprint, so a
    changed record, label, language or setting makes a new file and an unchanged one is reused.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if not _SPLIT_NAME.match(split_name):
        raise ValueError(f"split_name must match {_SPLIT_NAME.pattern} (it is part of a file name), got {split_name!r}")
    path: Path | None = None
    if cache_dir is not None:
        key = hashlib.sha256((_records_fingerprint(records) + builder.config.fingerprint()).encode()).hexdigest()
        path = Path(cache_dir) / f"graphs-{split_name}-{key[:16]}.pt"
        if path.exists():
            try:
                graphs, stats = _unpack(torch.load(path, weights_only=True))
            except Exception as exc:  # a torn or foreign file: rebuild it rather than fail the run
                warnings.warn(f"graph cache {path} unreadable ({exc}); rebuilding it", stacklevel=2)
            else:
                stats.cache_file, stats.cache_hit = str(path), True
                if on_error == "raise" and stats.failed:
                    raise _failure_error(split_name, stats.failed[0])
                return graphs, stats

    stats = GraphBuildStats(edge_type_names=builder.config.edge_type_names)
    graphs = []
    for r in records:
        try:
            g = builder.build(r.func, getattr(r, "lang", None))
        except GraphBuildError as exc:
            failed = {"id": str(r.id), "source": str(getattr(r, "source", "") or ""), "reason": str(exc)}
            if on_error == "raise":
                raise _failure_error(split_name, failed) from exc
            stats.failed.append(failed)
            continue
        g.y = torch.tensor([int(r.target)], dtype=torch.long)
        g.rid = str(r.id)
        stats.add(g)
        graphs.append(g)
    if path is not None:
        stats.cache_file = str(path)
        with atomic_open(path) as fh:
            torch.save(_pack(graphs, stats), fh)
    return graphs, stats


def _expand(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            found = sorted(glob.glob(text))
            if not found:
                raise FileNotFoundError(f"no graph files match {text!r}")
            out.extend(Path(p) for p in found)
        elif Path(text).is_dir():
            raise IsADirectoryError(f"{text}: is a folder; pass a glob such as '{text}/*.pt'")
        elif not Path(text).exists():
            raise FileNotFoundError(f"graph file not found: {text}")
        else:
            out.append(Path(text))
    return out


def load_pt_graphs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Data]:
    """Pre-built PyG graphs, one ``Data`` per ``.pt`` file (globs allowed), loaded with weights_only=True."""
    graphs = []
    for path in _expand(paths):
        try:
            # Only the classes a pickled Data refers to are allowed, and only inside this call.
            with torch.serialization.safe_globals([Data, DataEdgeAttr, DataTensorAttr, GlobalStorage]):
                obj = torch.load(path, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot load a PyG Data with torch.load(weights_only=True): {exc}") from exc
        if not isinstance(obj, Data):
            raise ValueError(f"{path}: expected one torch_geometric.data.Data, got {type(obj).__name__}")
        ei = obj.edge_index
        if ei is None or ei.dim() != 2 or ei.size(0) != 2:
            raise ValueError(f"{path}: Data.edge_index must be a [2, E] tensor, got {None if ei is None else tuple(ei.shape)}")
        graphs.append(obj)
    return graphs


# ------------------------------------------------------------------------------------- statistics


def _summary(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "median": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "median": float(_statistics.median(values)),
            "p95": float(np.percentile(arr, 95)), "max": int(arr.max())}


def graph_statistics(
    splits: dict[str, list[Data]],
    build_stats: dict[str, GraphBuildStats] | None = None,
    config: GraphConfig | None = None,
) -> dict[str, Any]:
    """Per split: sizes, edges per type name, truncations, parse errors, labels (plain JSON types).

    Edge type names come from the split's build stats, else ``config``, else the default config.
    """
    out: dict[str, Any] = {}
    for split, graphs in splits.items():
        bs = (build_stats or {}).get(split)
        names = bs.edge_type_names if bs is not None else (config or GraphConfig()).edge_type_names
        type_counts = torch.zeros(len(names), dtype=torch.long)
        labels: dict[str, int] = {}
        nodes, edges = [], []
        truncated = error_graphs = error_nodes = 0
        for g in graphs:
            nodes.append(int(g.num_nodes))
            edges.append(int(g.edge_index.size(1)))
            et = getattr(g, "edge_type", None)
            if et is not None and et.numel():
                bc = torch.bincount(et, minlength=len(names))
                if bc.numel() > len(names):
                    raise ValueError(f"split {split!r}: edge_type id {bc.numel() - 1} but only {len(names)} names {names}")
                type_counts += bc
            y = getattr(g, "y", None)
            if y is not None:
                key = str(int(y.view(-1)[0]))
                labels[key] = labels.get(key, 0) + 1
            truncated += int(getattr(g, "truncated", 0))
            ne = int(getattr(g, "num_error_nodes", 0))
            error_nodes += ne
            error_graphs += int(ne > 0)
        entry: dict[str, Any] = {
            "n_graphs": len(graphs),
            "nodes": _summary(nodes),
            "edges": _summary(edges),
            "edge_type_counts": {name: int(c) for name, c in zip(names, type_counts.tolist())},
            "truncated": truncated,
            "graphs_with_parse_errors": error_graphs,
            "error_nodes": error_nodes,
            "label_counts": dict(sorted(labels.items())),
        }
        if bs is not None:
            entry["failed"] = len(bs.failed)
            entry["cache_hit"] = bs.cache_hit
        out[split] = entry
    return out
