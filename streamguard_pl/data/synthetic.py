"""The embedded default corpus: deterministic, labelled C functions (vulnerable / fixed variants).

A fresh clone must train end to end without a download, so this module writes a small corpus in the
Devign/CodeXGLUE JSON Lines schema. It is built to reward models that read *structure*: each template
instance (one ``group``) is rendered once vulnerable and once fixed with the same names, fillers and
wrappers, and most fixes only move, retarget or reorder the very same statements (check before vs after
the copy, free then use vs use then free, a guard on the wrong variable). A bag of unigrams and bigrams
therefore sees nearly identical counts in both classes, while statement order and data flow decide the
label. A few variants do differ by a token (``printf(s)`` vs ``printf("%s", s)``, ``<`` vs ``<=``) and the
same tokens are sprinkled through benign filler of both classes, so no single token gives the label away.

Two difficulties (``PROFILES``). "hard" is the above alone. "easy", the default and what the demo
configs train on, keeps it but with less filler and two variants per label and family, and adds the
soft token signal real code has: one risky-API call per instance (strcpy, sprintf, gets ...) that is
risky in 85% of vulnerable and 15% of fixed renderings, plus risky calls on constants in shared filler.
Small models learn "easy" in a CPU minute; a bag of tokens still stays well below 0.95 accuracy.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamguard_pl.data.records import CodeRecord, split_records, write_records_jsonl
from streamguard_pl.jsonsafe import atomic_write_json, read_json

__all__ = ["FAMILIES", "CWE", "DIFFICULTIES", "generate_records", "write_synthetic_corpus", "main"]

Stmt = list[str]  # the lines of one statement, indented relative to its enclosing block
Variants = dict[str, list[Stmt]]

SPLIT_FILES = {"train": "train.jsonl", "val": "valid.jsonl", "test": "test.jsonl"}
_MAX_ATTEMPTS = 50  # redraws of one template instance whose text collides with an earlier function

# ----------------------------------------------------------------------------- vocabulary
# Names are drawn per template instance from role pools shared by both labels, so an identifier
# carries no label information; only where it is used does.

_POOLS: dict[str, tuple[str, ...]] = {
    "buf": ("buf", "dst", "out", "tmp", "line", "name", "path", "hdr", "msg", "scratch", "label", "word",
            "host", "key", "tag", "field_buf", "local"),
    "src": ("src", "input", "data", "str", "arg", "user", "payload", "text", "raw", "in", "value", "s",
            "param", "cstr", "ident"),
    "len": ("len", "n", "size", "nbytes", "length", "sz", "want", "copy_len", "need", "datalen", "slen",
            "nread", "in_len"),
    "cap": ("cap", "max", "limit", "bufsize", "avail", "room", "capacity", "alloc_len", "maxlen", "space"),
    "count": ("count", "nmemb", "nitems", "nelem", "num", "entries", "nrec", "nr", "cnt"),
    "elem": ("elem_size", "esize", "item_size", "stride", "width", "recsz", "unit"),
    "total": ("total", "bytes", "alloc_size", "want_size", "req_size", "full", "span"),
    "ptr": ("p", "node", "entry", "item", "obj", "req", "sess", "cur", "elem", "rec", "pkt", "desc", "ent",
            "slot_ptr", "chunk"),
    "ctx": ("ctx", "dev", "conn", "st", "priv", "srv", "handle", "h", "self", "mgr", "env", "sb"),
    "idx": ("i", "j", "k", "idx", "pos", "off", "slot", "index", "cursor", "n_done", "w"),
    "rc": ("rc", "ret", "err", "status", "res", "r", "error"),
    "flags": ("flags", "mode", "opts", "kind", "op", "cmd", "type", "how", "level"),
    "acc": ("sum", "acc", "hash", "crc", "checksum", "seen", "hits", "score", "nbad", "tally"),
    "table": ("table", "arr", "vals", "map", "lut", "weights", "offsets", "items", "slots", "ids"),
    "val": ("val", "v", "x", "result", "avg", "mean", "ratio", "q", "out_val", "per"),
    "num": ("total", "numer", "sum_ms", "bytes_in", "ticks", "elapsed", "credits", "weight"),
    "den": ("count", "denom", "nsamples", "divisor", "nr_ops", "period", "users", "buckets"),
    "hdr": ("hdr_len", "hlen", "header", "skip", "prefix_len", "min_len", "head"),
    "rem": ("rem", "left", "body_len", "remaining", "plen", "payload_len", "rest"),
    "cmdbuf": ("cmd", "cmdline", "command", "shell", "argv_buf", "exec_buf"),
    "label": ("prefix", "tagline", "banner", "who", "origin", "title"),
}
_STRUCTS = ("conn", "session", "device", "request", "packet", "entry", "node", "buffer", "context",
            "client", "record", "item", "parser", "stream", "job", "inode", "table_info")
_INT_FIELDS = ("len", "size", "count", "flags", "id", "state", "refcnt", "nr_items", "errors", "last_len",
               "calls", "pending", "avg", "result", "seq", "used")
_PTR_FIELDS = ("data", "name", "buf", "priv", "payload", "cache", "owner", "blob")
_VERBS = ("parse", "read", "handle", "copy", "load", "build", "decode", "encode", "process", "update", "fill",
          "init", "append", "format", "apply", "store", "emit", "scan", "prepare", "set", "push", "pack")
_NOUNS = ("header", "name", "packet", "record", "entry", "config", "buffer", "frame", "message", "token",
          "field", "path", "request", "reply", "chunk", "block", "table", "list", "item", "user", "attr",
          "option", "segment", "label", "stats")
_PREFIXES = ("", "", "", "net_", "cfg_", "img_", "usb_", "http_", "xml_", "db_", "fs_", "snd_", "tty_", "ipc_")
_LOGGERS = ("log_debug", "log_warn", "log_info", "pr_info", "pr_err", "trace", "dbg_printf", "LOG_MSG", "warnx")
_LOG_TEXTS = ("invalid length", "bad input", "value too large", "unexpected state", "short read",
              "size mismatch", "request rejected", "entry not found", "retrying", "done", "overflow",
              "empty payload", "unsupported mode", "limit reached")
_CONSTS = ("STATE_READY", "STATE_IDLE", "STATE_BUSY", "MODE_FAST", "F_DIRTY", "F_VERBOSE", "OPT_STRICT",
           "MAX_RETRIES", "DEFAULT_LEVEL", "CACHE_LINE")
_SIZES = ("16", "32", "64", "128", "256", "512", "MAX_NAME", "BUF_SIZE", "PATH_LEN", "LINE_MAX", "NAME_LEN")
_ERRORS = ("-1", "-1", "-EINVAL", "-EIO", "-ENOMEM", "ERR_INVALID", "-EFAULT", "-E2BIG")
_LABELS = ("out", "cleanup", "fail", "done", "err", "out_free", "bail")
_SIZE_TYPES = ("size_t", "size_t", "unsigned int", "uint32_t", "unsigned long", "size_t")
_INT_TYPES = ("int", "int", "long", "int32_t", "unsigned int", "unsigned")
_RET_TYPES = ("int", "int", "static int", "static int", "static inline int", "long", "static long", "ssize_t")
_SHELL_CMDS = ("tar -czf /tmp/%s.tgz .", "convert %s out.png", "ping -c 1 %s", "gzip -d %s", "ls -l %s",
               "lpr -P %s", "rm -f /var/cache/%s", "mount %s /mnt")
_C_WORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while main free malloc".split()
)

# ----------------------------------------------------------------------------- function builder


def _indent(lines: Sequence[str], by: str) -> list[str]:
    return [by + line if line else line for line in lines]


@dataclass
class _Fn:
    """Everything one template instance shares between its vulnerable and fixed renderings."""

    rng: random.Random
    used: set[str] = field(default_factory=lambda: set(_C_WORDS))
    roles: dict[str, str] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    decls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.rng
        self.tab = r.choice(("    ", "    ", "\t", "  "))
        self.goto = r.random() < 0.3
        self.compact = r.random() < 0.3  # single-statement ifs without braces
        self.error = r.choice(_ERRORS)
        self.label = r.choice(_LABELS)
        self.logger = r.choice(_LOGGERS)
        self.ret_type = r.choice(_RET_TYPES)
        self.fname = r.choice(_PREFIXES) + r.choice(_VERBS) + "_" + r.choice(_NOUNS)
        self.used.add(self.fname)

    # -- names ------------------------------------------------------------------------------
    def fresh(self, pool: Sequence[str]) -> str:
        choices = [n for n in pool if n not in self.used]
        name = self.rng.choice(choices) if choices else f"{self.rng.choice(pool)}{len(self.used)}"
        self.used.add(name)
        return name

    def _role(self, role: str, make: Callable[[str], None], pool: str | None = None) -> str:
        if role not in self.roles:
            name = self.fresh(_POOLS[pool or role])
            self.roles[role] = name
            make(name)
        return self.roles[role]

    def param(self, role: str, ctype: str, pool: str | None = None) -> str:
        return self._role(role, lambda n: self.params.append(_decl(ctype, n)), pool)

    def local(self, role: str, ctype: str, init: str | None = None, pool: str | None = None) -> str:
        text = (lambda n: _decl(ctype, n)) if init is None else (lambda n: f"{_decl(ctype, n)} = {init}")
        return self._role(role, lambda n: self.decls.append(text(n) + ";"), pool)

    def array(self, role: str, elem: str = "char", pool: str | None = None) -> str:
        size = self.rng.choice(_SIZES)
        return self._role(role, lambda n: self.decls.append(f"{elem} {n}[{size}];"), pool)

    def struct_ptr(self, role: str, local: bool = False, init: str | None = None, pool: str = "ptr") -> str:
        ctype = f"struct {self.rng.choice(_STRUCTS)} *"
        return self.local(role, ctype, init, pool) if local else self.param(role, ctype, pool)

    def ctx(self) -> str:
        return self.struct_ptr("ctx", pool="ctx")

    def rc(self) -> str:
        return self.local("rc", "int", "0")

    def call(self, verb: Sequence[str] = _VERBS, noun: Sequence[str] = _NOUNS) -> str:
        name = self.rng.choice(verb) + "_" + self.rng.choice(noun)
        self.used.add(name)
        return name

    def ifield(self) -> str:
        return self.rng.choice(_INT_FIELDS)

    # -- statements -------------------------------------------------------------------------
    def fail(self, code: str | None = None) -> Stmt:
        """The instance's error exit: a plain return, or set the return code and jump to cleanup."""
        code = code or self.error
        if self.goto:
            return [f"{self.rc()} = {code};", f"goto {self.label};"]
        return [f"return {code};"]

    def log(self, text: str | None = None, *args: str) -> Stmt:
        text = text or self.rng.choice(_LOG_TEXTS)
        fmt = text + "".join(" %d" if a != "__func__" else " %s" for a in args)
        tail = "".join(", " + a for a in args)
        return [f'{self.logger}("{fmt}\\n"{tail});']

    def if_(self, cond: str, body: Sequence[Stmt], orelse: Sequence[Stmt] | None = None) -> Stmt:
        lines = [line for st in body for line in st]
        if self.compact and orelse is None and len(lines) == 1:
            return [f"if ({cond})", *_indent(lines, self.tab)]
        out = [f"if ({cond}) {{", *_indent(lines, self.tab), "}"]
        if orelse is not None:
            out[-1] = "} else {"
            out += [*_indent([line for st in orelse for line in st], self.tab), "}"]
        return out

    def block(self, head: str, body: Sequence[Stmt], tail: str = "}") -> Stmt:
        return [f"{head} {{", *_indent([line for st in body for line in st], self.tab), tail]


def _decl(ctype: str, name: str) -> str:
    return f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"


# ----------------------------------------------------------------------------- families
# Each family declares every name any of its variants uses (so declarations never differ by label)
# and returns (vulnerable variants, fixed variants), each a list of statements.


def _stack_overflow(b: _Fn) -> tuple[Variants, Variants]:
    buf = b.array("buf")
    src = b.param("src", "const char *")
    n = b.param("len", b.rng.choice(_SIZE_TYPES))
    other = b.param("other", b.rng.choice(_SIZE_TYPES), pool="cap")
    i = b.local("i", "size_t", pool="idx")
    acc = b.local("acc", "size_t", "0")
    use = [f"{acc} += {other};"]
    chk = b.if_(f"{n} >= sizeof({buf})", [b.fail()])
    clamp = b.if_(f"{n} >= sizeof({buf})", [[f"{n} = sizeof({buf}) - 1;"]])
    cpy = [f"memcpy({buf}, {src}, {n});"]
    term = [f"{buf}[{n}] = '\\0';"]
    loop_ok = b.block(f"for ({i} = 0; {i} < {n} && {i} + 1 < sizeof({buf}); {i}++)", [[f"{buf}[{i}] = {src}[{i}];"]])
    loop_bad = b.block(f"for ({i} = 0; {i} + 1 < {n} && {i} < sizeof({buf}); {i}++)", [[f"{buf}[{i}] = {src}[{i}];"]])
    lterm = [f"{buf}[{i}] = '\\0';"]
    vuln = {
        "check_after_copy": [use, cpy, chk, term],
        "check_wrong_length": [use, b.if_(f"{other} >= sizeof({buf})", [b.fail()]), cpy, term],
        "clamp_after_copy": [use, cpy, clamp, term],
        "loop_bound_on_wrong_side": [use, loop_bad, lterm],
    }
    fixed = {
        "check_before_copy": [use, chk, cpy, term],
        "clamp_before_copy": [clamp, cpy, term, use],
        "loop_bounded_by_buffer": [use, loop_ok, lterm],
    }
    return vuln, fixed


def _heap_overflow(b: _Fn) -> tuple[Variants, Variants]:
    buf = b.local("buf", "char *", "NULL")
    src = b.param("src", "const char *")
    n = b.param("len", "size_t")
    cap = b.param("cap", "size_t")
    out = b.param("out", "char **", pool="buf")
    alloc = [f"{buf} = malloc({cap});"]
    nul = b.if_(f"{buf} == NULL", [b.fail("-ENOMEM")])
    chk = b.if_(f"{n} > {cap}", [b.fail()])
    swapped = b.if_(f"{cap} > {n}", [b.fail()])
    clamp = b.if_(f"{n} > {cap}", [[f"{n} = {cap};"]])
    cpy = [f"memcpy({buf}, {src}, {n});"]
    store = [f"*{out} = {buf};"]
    alloc_n1 = [f"{buf} = malloc({n} + 1);"]
    alloc_n = [f"{buf} = malloc({n});"]
    term = [f"{buf}[{n}] = '\\0';"]
    vuln = {
        "check_after_copy": [alloc, nul, cpy, chk, store],
        "bound_operands_swapped": [swapped, alloc, nul, cpy, store],
        "clamp_after_copy": [alloc, nul, cpy, clamp, store],
        "no_room_for_terminator": [chk, alloc_n, nul, cpy, term, store],
    }
    fixed = {
        "check_before_alloc": [chk, alloc, nul, cpy, store],
        "clamp_before_copy": [alloc, nul, clamp, cpy, store],
        "room_for_terminator": [chk, alloc_n1, nul, cpy, term, store],
    }
    return vuln, fixed


def _integer_overflow(b: _Fn) -> tuple[Variants, Variants]:
    count = b.param("count", b.rng.choice(_SIZE_TYPES))
    elem = b.param("elem", "size_t")
    src = b.param("src", "const void *")
    total = b.local("total", "size_t")
    buf = b.local("buf", "char *", "NULL")
    i = b.local("i", "size_t", pool="idx")
    lim = b.rng.choice(("SIZE_MAX", "SIZE_MAX", "UINT_MAX", "INT_MAX"))
    chk = b.if_(f"{elem} != 0 && {count} > {lim} / {elem}", [b.fail("-EOVERFLOW")])
    post = b.if_(f"{elem} != 0 && {total} / {elem} != {count}", [b.fail("-EOVERFLOW")])
    wrong = b.if_(f"{elem} != 0 && {total} > {lim} / {elem}", [b.fail("-EOVERFLOW")])
    mul = [f"{total} = {count} * {elem};"]
    alloc = [f"{buf} = malloc({total});"]
    nul = b.if_(f"{buf} == NULL", [b.fail("-ENOMEM")])
    loop = b.block(f"for ({i} = 0; {i} < {count}; {i}++)", [[f"memcpy({buf} + {i} * {elem}, {src}, {elem});"]])
    keep = [f"{b.ctx()}->{b.rng.choice(_PTR_FIELDS)} = {buf};"]
    vuln = {
        "check_after_fill": [mul, alloc, nul, loop, chk, keep],
        "check_wrapped_product": [mul, wrong, alloc, nul, loop, keep],
        "verify_after_fill": [mul, alloc, nul, loop, post, keep],
    }
    fixed = {
        "check_before_multiply": [chk, mul, alloc, nul, loop, keep],
        "verify_product_first": [mul, post, alloc, nul, loop, keep],
    }
    return vuln, fixed


def _integer_underflow(b: _Fn) -> tuple[Variants, Variants]:
    pkt = b.param("pkt", "const unsigned char *", pool="src")
    n = b.param("len", "size_t")
    hdr = b.param("hdr", "size_t")
    rem = b.local("rem", "size_t")
    rc = b.rc()
    handler = b.call(("handle", "parse", "consume", "decode"), ("body", "payload", "data", "rest", "frame"))
    chk = b.if_(f"{n} < {hdr}", [b.fail()])
    chk_rem = b.if_(f"{rem} < 0", [b.fail()])  # unsigned: never true
    sub = [f"{rem} = {n} - {hdr};"]
    use = [f"{rc} = {handler}({pkt} + {hdr}, {rem});"]
    vuln = {
        "check_after_use": [sub, use, chk],
        "ternary_operands_swapped": [[f"{rem} = {hdr} > {n} ? {n} - {hdr} : 0;"], use],
        "unsigned_negative_check": [sub, chk_rem, use],
    }
    fixed = {
        "check_before_subtract": [chk, sub, use],
        "ternary_guard": [[f"{rem} = {n} > {hdr} ? {n} - {hdr} : 0;"], use],
        "check_before_use": [sub, chk, use],
    }
    return vuln, fixed


def _use_after_free(b: _Fn) -> tuple[Variants, Variants]:
    ctx = b.ctx()
    key = b.param("key", b.rng.choice(_INT_TYPES), pool="idx")
    p = b.struct_ptr("ptr", local=True)
    val = b.local("val", b.rng.choice(_INT_TYPES))
    f_in, f_out = b.ifield(), b.ifield()
    get = [f"{p} = {b.call(('lookup', 'find', 'get', 'acquire'), ('entry', 'node', 'session', 'item'))}({ctx}, {key});"]
    nul = b.if_(f"{p} == NULL", [b.fail("-ENOENT")])
    rel = b.rng.choice(("free", "free", "kfree", b.call(("release", "put", "destroy"), ("entry", "node", "item"))))
    fr = [f"{rel}({p});"]
    clr = [f"{p} = NULL;"]
    use = [f"{ctx}->{f_out} = {p}->{f_in};"]
    guarded = b.if_(f"{p} != NULL", [use])
    rd, wr = [f"{val} = {p}->{f_in};"], [f"{ctx}->{f_out} = {val};"]
    vuln = {
        "free_then_use": [get, nul, fr, use, clr],
        "guard_before_clear": [get, nul, fr, guarded, clr],
        "read_after_free": [get, nul, fr, rd, wr, clr],
    }
    fixed = {
        "use_then_free": [get, nul, use, fr, clr],
        "clear_before_guard": [get, nul, fr, clr, guarded],
        "read_before_free": [get, nul, rd, fr, wr, clr],
    }
    return vuln, fixed


def _double_free(b: _Fn) -> tuple[Variants, Variants]:
    p = b.local("ptr", "char *", "NULL", pool="buf")
    n = b.param("len", "size_t")
    rc = b.rc()
    work = b.call(("fill", "read", "load", "decode"), ("buffer", "block", "chunk", "record"))
    alloc = [f"{p} = malloc({n});"]
    nul = b.if_(f"{p} == NULL", [b.fail("-ENOMEM")])
    run = [f"{rc} = {work}({p}, {n});"]
    fr, clr, warn = [f"free({p});"], [f"{p} = NULL;"], b.log()
    vuln = {
        "clear_after_second_free": [alloc, nul, run, b.if_(f"{rc} < 0", [fr]), fr, clr],
        "error_path_falls_through": [alloc, nul, run, b.if_(f"{rc} < 0", [fr, warn]), fr],
        "clear_in_wrong_branch": [alloc, nul, run, b.if_(f"{rc} < 0", [fr], [warn, clr]), fr],
    }
    fixed = {
        "clear_after_first_free": [alloc, nul, run, b.if_(f"{rc} < 0", [fr, clr]), fr],
        "error_path_returns": [alloc, nul, run, b.if_(f"{rc} < 0", [warn, fr, ["return " + rc + ";"]]), fr],
        "clear_in_error_branch": [alloc, nul, run, b.if_(f"{rc} < 0", [fr, clr], [warn]), fr],
    }
    return vuln, fixed


def _null_deref(b: _Fn) -> tuple[Variants, Variants]:
    ctx = b.ctx()
    key = b.param("key", b.rng.choice(_INT_TYPES), pool="idx")
    p = b.struct_ptr("ptr", local=True)
    f1, f2 = b.ifield(), b.ifield()
    get = [f"{p} = {b.call(('lookup', 'find', 'get', 'first'), ('entry', 'node', 'slot', 'child'))}({ctx}, {key});"]
    use = [f"{p}->{f1} = {key};"]
    use2 = [f"{ctx}->{f2}++;"]
    chk = b.if_(f"{p} == NULL", [b.fail("-ENOENT")])
    vuln = {
        "check_after_use": [get, use, chk, use2],
        "check_wrong_pointer": [get, b.if_(f"{ctx} == NULL", [b.fail("-ENOENT")]), use, use2],
        "check_only_logs": [get, b.if_(f"{p} == NULL", [b.log("entry not found")]), use, use2],
    }
    fixed = {
        "check_before_use": [get, chk, use, use2],
        "guarded_use": [get, b.if_(f"{p} != NULL", [use]), use2],
        "check_negated": [get, b.if_(f"!{p}", [b.fail("-ENOENT")]), use, use2],
    }
    return vuln, fixed


def _format_string(b: _Fn) -> tuple[Variants, Variants]:
    msg = b.param("msg", "const char *", pool="src")
    buf = b.array("buf")
    label = b.local("label", "const char *", f'"{b.rng.choice(("warning", "note", "client", "peer", "audit"))}"')
    out = b.rng.choice(("printf", "printf", b.logger))
    stream = b.rng.choice(("stderr", "stdout", "fp", "log_file"))
    vuln = {
        "snprintf_user_format": [[f"snprintf({buf}, sizeof({buf}), {msg});"], [f'{out}("%s\\n", {buf});']],
        # Same tokens as the fixed twin: only data flow (which argument is the constant) differs.
        "printf_user_format": [[f'{out}("%s: ", {label});'], [f"{out}({msg});"]],
        "fprintf_user_format": [[f"fprintf({stream}, {msg});"], [f"fputc('\\n', {stream});"]],
    }
    fixed = {
        "snprintf_literal_format": [[f'snprintf({buf}, sizeof({buf}), "%s", {msg});'], [f'{out}("%s\\n", {buf});']],
        "printf_constant_format": [[f'{out}("%s: ", {msg});'], [f"{out}({label});"]],
        "fputs_user_text": [[f"fputs({msg}, {stream});"], [f"fputc('\\n', {stream});"]],
    }
    return vuln, fixed


def _command_injection(b: _Fn) -> tuple[Variants, Variants]:
    arg = b.param("arg", "const char *", pool="src")
    name = b.param("name", "const char *", pool="label")
    cmd = b.array("cmd", pool="cmdbuf")
    rc = b.rc()
    valid = b.call(("is_valid", "is_safe", "check", "sanitize"), ("name", "arg", "path", "host", "token"))
    fmt = [f'snprintf({cmd}, sizeof({cmd}), "{b.rng.choice(_SHELL_CMDS)}", {arg});']
    run = [f"{rc} = system({cmd});"]
    note = b.log(None, "__func__")
    chk = b.if_(f"!{valid}({arg})", [b.fail()])
    meta = b.if_(f"{name} == NULL", [b.fail()])
    vuln = {
        "validate_after_run": [meta, fmt, run, chk],
        "validate_other_argument": [b.if_(f"!{valid}({name})", [b.fail()]), b.if_(f"{arg} == NULL", [b.fail()]), fmt, run],
        "validation_only_logs": [meta, b.if_(f"!{valid}({arg})", [note]), fmt, run],
    }
    fixed = {
        "validate_before_format": [meta, chk, fmt, run],
        "validate_before_run": [meta, fmt, chk, run],
        "metachar_scan": [meta, b.if_(f'strpbrk({arg}, ";|&`$") != NULL', [b.fail()]), fmt, run],
    }
    return vuln, fixed


def _memory_leak(b: _Fn) -> tuple[Variants, Variants]:
    p = b.local("ptr", "char *", "NULL", pool="buf")
    n = b.param("len", "size_t")
    rc = b.local("rc", "int", "0")
    work = b.call(("fill", "read", "load", "parse", "hash"), ("buffer", "block", "chunk", "record", "input"))
    alloc = [f"{p} = malloc({n});"]
    nul = b.if_(f"{p} == NULL", [["return -ENOMEM;"]])
    run = [f"{rc} = {work}({p}, {n});"]
    fr = [f"free({p});"]
    on_err = b.if_(f"{rc} < 0", [[f"return {rc};"]])
    empty = b.if_(f"{n} == 0", [["return -EINVAL;"]])
    vuln = {
        "return_before_free": [empty, alloc, nul, run, on_err, fr],
        "empty_check_after_alloc": [alloc, nul, empty, run, fr, on_err],
        "error_branch_skips_free": [empty, alloc, nul, run, b.if_(f"{rc} < 0", [b.log(), [f"return {rc};"]]), fr],
    }
    fixed = {
        "free_before_return": [empty, alloc, nul, run, fr, on_err],
        "empty_check_before_alloc": [empty, alloc, nul, run, fr, on_err],
        "error_branch_frees": [empty, alloc, nul, run, b.if_(f"{rc} < 0", [fr, [f"return {rc};"]]), fr],
    }
    return vuln, fixed


def _division_by_zero(b: _Fn) -> tuple[Variants, Variants]:
    ctx = b.ctx()
    num = b.param("num", b.rng.choice(_SIZE_TYPES))
    den = b.param("den", b.rng.choice(_SIZE_TYPES))
    val = b.local("val", b.rng.choice(_SIZE_TYPES))
    fld = b.ifield()
    chk = b.if_(f"{den} == 0", [b.fail()])
    div = [f"{val} = {num} / {den};"]
    store = [f"{ctx}->{fld} = {val};"]
    vuln = {
        "check_after_divide": [div, chk, store],
        "ternary_tests_numerator": [[f"{val} = {num} != 0 ? {num} / {den} : 0;"], store],
        "check_wrong_operand": [b.if_(f"{num} == 0", [b.fail()]), div, store],
    }
    fixed = {
        "check_before_divide": [chk, div, store],
        "ternary_tests_denominator": [[f"{val} = {den} != 0 ? {num} / {den} : 0;"], store],
        "guarded_divide": [b.if_(f"{den} != 0", [div], [[f"{val} = 0;"]]), store],
    }
    return vuln, fixed


def _oob_read(b: _Fn) -> tuple[Variants, Variants]:
    table = b.param("table", b.rng.choice(("const int *", "const uint8_t *", "const long *", "const short *")))
    n = b.param("count", "size_t")
    idx = b.param("idx", "size_t")
    val = b.local("val", "long", "0")
    i = b.local("i", "size_t", pool="idx")
    acc = b.local("acc", "long", "0")
    out = b.param("out", "long *", pool="val")
    chk = b.if_(f"{idx} >= {n}", [b.fail("-ERANGE")])
    rd = [f"{val} = {table}[{idx}];"]
    store = [f"*{out} = {val} + {acc};"]
    vuln = {
        "check_after_read": [rd, chk, store],
        "loop_inclusive_bound": [b.block(f"for ({i} = 0; {i} <= {n}; {i}++)", [[f"{acc} += {table}[{i}];"]]), store],
        "off_by_one_check": [b.if_(f"{idx} > {n}", [b.fail("-ERANGE")]), rd, store],
    }
    fixed = {
        "check_before_read": [chk, rd, store],
        "loop_exclusive_bound": [b.block(f"for ({i} = 0; {i} < {n}; {i}++)", [[f"{acc} += {table}[{i}];"]]), store],
        "guarded_read": [b.if_(f"{idx} < {n}", [rd]), store],
    }
    return vuln, fixed


@dataclass(frozen=True)
class _Family:
    cwe: str
    build: Callable[[_Fn], tuple[Variants, Variants]]


_FAMILY_TABLE: dict[str, _Family] = {
    "stack_overflow": _Family("CWE-121", _stack_overflow),
    "heap_overflow": _Family("CWE-122", _heap_overflow),
    "integer_overflow": _Family("CWE-190", _integer_overflow),
    "integer_underflow": _Family("CWE-191", _integer_underflow),
    "use_after_free": _Family("CWE-416", _use_after_free),
    "double_free": _Family("CWE-415", _double_free),
    "null_deref": _Family("CWE-476", _null_deref),
    "format_string": _Family("CWE-134", _format_string),
    "command_injection": _Family("CWE-78", _command_injection),
    "memory_leak": _Family("CWE-401", _memory_leak),
    "division_by_zero": _Family("CWE-369", _division_by_zero),
    "oob_read": _Family("CWE-125", _oob_read),
}
FAMILIES: tuple[str, ...] = tuple(_FAMILY_TABLE)
CWE: dict[str, str] = {name: fam.cwe for name, fam in _FAMILY_TABLE.items()}

# ----------------------------------------------------------------------------- benign filler
# Shared by both labels of an instance. It also carries the tokens that single variants lean on
# (sizeof, "+ 1", "<=", printf with a literal format, NULL checks, free) so that they are not rare.


def _f_log(b: _Fn) -> Stmt:
    return b.log(None, "__func__") if b.rng.random() < 0.5 else b.log()


def _f_counter(b: _Fn) -> Stmt:
    return [f"{b.ctx()}->{b.ifield()}{b.rng.choice(('++', ' += 1', ' = 0', '--'))};"]


def _f_loop(b: _Fn) -> Stmt:
    k = b.fresh(_POOLS["idx"])
    acc = b.fresh(_POOLS["acc"])
    b.decls += [f"int {k};", f"unsigned int {acc} = 0;"]
    lim = b.rng.choice(("4", "8", "16", "NR_SLOTS", "MAX_RETRIES", f"{b.ctx()}->{b.ifield()}"))
    head = b.rng.choice((f"{k} = 0; {k} < {lim}; {k}++", f"{k} = 1; {k} <= {lim}; {k}++"))
    body = b.rng.choice((f"{acc} = {acc} * 31 + {k};", f"{acc} += {k} + 1;", f"{acc} ^= {k};"))
    return b.block(f"for ({head})", [[body]])


def _f_switch(b: _Fn) -> Stmt:
    mode = b.param("flags", "int")
    x = b.fresh(_POOLS["val"])
    b.decls.append(f"int {x} = 0;")
    a, c = b.rng.sample(_CONSTS, 2)
    t = b.tab
    return [f"switch ({mode}) {{", "case 0:", f"{t}{x} = {a};", f"{t}break;", "case 1:", f"{t}{x} = {c};",
            f"{t}break;", "default:", f"{t}{x} = -1;", f"{t}break;", "}"]


def _f_flag_log(b: _Fn) -> Stmt:
    mode = b.param("flags", "int")
    return b.if_(f"{mode} & {b.rng.choice(_CONSTS)}", [b.log()])


def _f_early_return(b: _Fn) -> Stmt:
    mode = b.param("flags", "int")
    return b.if_(f"{mode} == {b.rng.choice(('2', '3', 'MODE_FAST', 'OPT_STRICT'))}", [["return 0;"]])


def _f_scratch(b: _Fn) -> Stmt:
    s = b.fresh(_POOLS["buf"])
    b.decls.append(f"char {s}[{b.rng.choice(_SIZES)}];")
    if b.rng.random() < 0.5:
        return [f"memset({s}, 0, sizeof({s}));"]
    return [f'snprintf({s}, sizeof({s}), "%d", {b.ctx()}->{b.ifield()});']


def _f_state(b: _Fn) -> Stmt:
    return [f"{b.ctx()}->{b.rng.choice(('state', 'flags', 'mode'))} = {b.rng.choice(_CONSTS)};"]


def _f_printf(b: _Fn) -> Stmt:
    return [b.rng.choice((f'printf("%s: %d\\n", __func__, {b.ctx()}->{b.ifield()});',
                          f'printf("{b.rng.choice(_LOG_TEXTS)}\\n");',
                          f'fprintf(stderr, "%s\\n", "{b.rng.choice(_LOG_TEXTS)}");'))]


def _f_check_call(b: _Fn) -> Stmt:
    rc = b.rc()
    return [f"{rc} = {b.call(('check', 'validate', 'lock', 'refresh'), _NOUNS)}({b.ctx()});",
            *b.if_(f"{rc} != 0", [b.fail(rc)])]


def _f_temp_alloc(b: _Fn) -> Stmt:
    t = b.fresh(_POOLS["ptr"])
    b.decls.append(f"char *{t} = NULL;")
    size = b.rng.choice(("32", "64", f"{b.ctx()}->{b.ifield()} + 1"))
    return [f"{t} = malloc({size});", *b.if_(f"{t} != NULL", [[f"{b.call(('fill', 'format', 'init'), _NOUNS)}({t});"], [f"free({t});"]])]


def _f_while(b: _Fn) -> Stmt:
    c = b.ctx()
    f1 = b.rng.choice(("pending", "queued", "retries", "backlog"))
    return b.block(f"while ({c}->{f1} > 0 && {c}->{b.ifield()} != 0)", [[f"{c}->{f1}--;"]])


_FILLERS: tuple[Callable[[_Fn], Stmt], ...] = (
    _f_log, _f_counter, _f_loop, _f_switch, _f_flag_log, _f_early_return, _f_scratch,
    _f_state, _f_printf, _f_check_call, _f_temp_alloc, _f_while,
)


# ----------------------------------------------------------------------------- soft API cues (easy)
# Real vulnerable code leans on risky APIs (strcpy, sprintf, gets, atoi ...) more often than fixed
# code does, yet both use them and so does benign code. The easy corpus gives each instance one
# such call, risky with probability `cue_rate` in the vulnerable rendering and `1 - cue_rate` in the
# fixed one, and puts risky calls on constant data into shared filler: a soft token signal a model
# picks up quickly, next to the structural one, without any single token deciding the label.

_CUES: tuple[tuple[str, str], ...] = (
    ("strcpy({s}, {src});", "strncpy({s}, {src}, sizeof({s}) - 1);"),
    ('sprintf({s}, "%s", {src});', 'snprintf({s}, sizeof({s}), "%s", {src});'),
    ("strcat({s}, {src});", "strncat({s}, {src}, sizeof({s}) - strlen({s}) - 1);"),
    ("gets({s});", "fgets({s}, sizeof({s}), stdin);"),
    ('sscanf({src}, "%s", {s});', 'sscanf({src}, "%31s", {s});'),
    ("strcpy({s}, {src});", "strlcpy({s}, {src}, sizeof({s}));"),
)


_CUE_SIZES = ("32", "64", "128", "256", "BUF_SIZE", "PATH_LEN", "LINE_MAX")


def _draw_cue(b: _Fn) -> tuple[str, str]:
    """One (risky, safe) call on a scratch buffer and a string parameter, shared by both renderings."""
    s = b.fresh(_POOLS["buf"])
    b.decls.append(f"char {s}[{b.rng.choice(_CUE_SIZES)}];")  # >= 32, so "%31s" is the safe width
    src = b.param("cue_src", "const char *", pool="label")
    risky, safe = b.rng.choice(_CUES)
    return risky.format(s=s, src=src), safe.format(s=s, src=src)


def _f_const_copy(b: _Fn) -> Stmt:
    """A risky API on constant data: benign, and in both renderings (so the API alone is no proof)."""
    s = b.fresh(_POOLS["buf"])
    b.decls.append(f"char {s}[{b.rng.choice(_SIZES)}];")
    text = b.rng.choice(_LOG_TEXTS)
    return [b.rng.choice((f'strcpy({s}, "{text}");', f'sprintf({s}, "%d", {b.ctx()}->{b.ifield()});',
                          f'strcat({s}, "/");', f'strcpy({s}, "");'))]


@dataclass(frozen=True)
class _Profile:
    """How hard the corpus is: amount of filler, wrappers, and the soft API cue."""

    pre_fillers: tuple[int, ...]
    post_fillers: tuple[int, ...]
    wrappers: tuple[str, ...]
    cue_rate: float | None  # P(risky call | vulnerable) = P(safe call | fixed); None: no cue statement
    const_copy_rate: float = 0.0  # chance of one risky-API-on-a-constant filler (shared by both renderings)
    max_variants: int | None = None  # use only the first k variants of each label per family


PROFILES: dict[str, _Profile] = {
    # Demo default: less filler, fewer wrappers, two variants per label and family, plus the soft API
    # cue. Measured at demo size (1,600 train functions, CPU): a GGNN reaches ~0.9 accuracy in
    # 8 epochs, a 2-layer RoBERTa ~0.8 (mostly from the cue); a bag of unigrams+bigrams ~0.86.
    "easy": _Profile((0, 0, 1), (0,), ("none",) * 6 + ("if", "else", "do", "switch"), 0.85, 0.2, 2),
    # Order and data flow only; the structure probe in the tests is tuned on this one.
    "hard": _Profile((0, 0, 1, 1, 2, 2, 3, 4, 5), (0, 0, 1, 1, 2, 3), ("none", "none", "none", "if", "else", "do", "switch"),
                     None),
}
DIFFICULTIES: tuple[str, ...] = tuple(PROFILES)


@dataclass(frozen=True)
class _Wrapper:
    """The control flow around the family's statements, drawn once so both renderings share it."""

    kind: str = "none"  # none | if | else | do | switch
    test: str = ""
    alt: Stmt = field(default_factory=list)


def _draw_wrapper(b: _Fn, kinds: Sequence[str]) -> _Wrapper:
    kind = b.rng.choice(kinds)
    if kind == "none":
        return _Wrapper()
    mode = b.param("flags", "int")
    test = {
        "if": f"{mode} & {b.rng.choice(_CONSTS)}",
        "else": f"{mode} == 0",
        "do": "",
        "switch": b.rng.choice(("1", "2", "MODE_FAST")),
    }[kind]
    return _Wrapper(kind, test, b.log())


def _wrap(b: _Fn, core: list[Stmt], w: _Wrapper) -> list[Stmt]:
    if w.kind == "none":
        return core
    if w.kind == "if":
        return [b.if_(w.test, core)]
    if w.kind == "else":
        return [b.if_(w.test, [w.alt], core)]
    if w.kind == "do":
        return [b.block("do", core, "} while (0);")]
    lines = [line for st in core for line in st]
    return [[f"switch ({b.roles['flags']}) {{", f"case {w.test}:", *_indent(lines, b.tab), f"{b.tab}break;",
             "default:", *_indent(w.alt, b.tab), f"{b.tab}break;", "}"]]


# ----------------------------------------------------------------------------- rendering


@dataclass
class _Instance:
    family: str
    vuln: tuple[str, str]  # (variant name, source)
    fixed: tuple[str, str]


def _render(b: _Fn, body: list[Stmt], gap: bool) -> str:
    """One C function from the instance's signature and declarations plus the given statements."""
    lines = [line for st in body for line in st]
    if b.goto:  # the label sits at column 0 in kernel (tab) style, indented elsewhere
        label = ("" if b.tab == "\t" else b.tab) + f"{b.label}:"
        tail = [label, *_indent([f"return {b.roles['rc']};"], b.tab)]
    else:
        tail = _indent([f"return {b.roles['rc']};" if "rc" in b.roles else "return 0;"], b.tab)
    params = ", ".join(b.params) if b.params else "void"
    head = [*b.decls, ""] if gap and b.decls else b.decls
    return "\n".join([f"{b.ret_type} {b.fname}({params})", "{", *_indent([*head, *lines], b.tab), *tail, "}"]) + "\n"


def _instance(family: str, rng: random.Random, profile: _Profile) -> _Instance:
    """Draw one template instance and render it once with a vulnerable and once with a fixed variant."""
    b = _Fn(rng)
    if rng.random() < 0.6:
        b.ctx()
    if b.goto:
        b.rc()
    vuln, fixed = _FAMILY_TABLE[family].build(b)
    if profile.max_variants:
        vuln, fixed = (dict(list(v.items())[: profile.max_variants]) for v in (vuln, fixed))
    v_name, f_name = rng.choice(list(vuln)), rng.choice(list(fixed))
    # A NULL guard on the context goes first: placed after a use it would be a null_deref itself.
    guard = [b.if_(f"{b.ctx()} == NULL", [b.fail()])] if rng.random() < 0.3 else []
    pre = guard + [rng.choice(_FILLERS)(b) for _ in range(rng.choice(profile.pre_fillers))]
    post = [rng.choice(_FILLERS)(b) for _ in range(rng.choice(profile.post_fillers))]
    wrapper = _draw_wrapper(b, profile.wrappers)
    gap = rng.random() < 0.6
    v_pre, f_pre = pre, pre
    if profile.cue_rate is not None:
        if rng.random() < profile.const_copy_rate:
            pre.insert(rng.randint(len(guard), len(pre)), _f_const_copy(b))
        risky, safe = _draw_cue(b)
        at = rng.randint(len(guard), len(pre))
        v_cue = risky if rng.random() < profile.cue_rate else safe
        f_cue = safe if rng.random() < profile.cue_rate else risky
        v_pre, f_pre = [*pre[:at], [v_cue], *pre[at:]], [*pre[:at], [f_cue], *pre[at:]]
    v_src = _render(b, [*v_pre, *_wrap(b, vuln[v_name], wrapper), *post], gap)
    f_src = _render(b, [*f_pre, *_wrap(b, fixed[f_name], wrapper), *post], gap)
    return _Instance(family, (v_name, v_src), (f_name, f_src))


def _normalized(text: str) -> str:
    return "".join(text.split())


def _check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    if families is None:
        return FAMILIES
    chosen = tuple(families)
    unknown = [f for f in chosen if f not in _FAMILY_TABLE]
    if unknown or not chosen:
        raise ValueError(f"unknown families {unknown!r}; choose from {', '.join(FAMILIES)}" if unknown
                         else "families must name at least one family")
    return chosen


def _check_difficulty(difficulty: str) -> _Profile:
    if difficulty not in PROFILES:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}; got {difficulty!r}")
    return PROFILES[difficulty]


def generate_records(
    n: int, seed: int = 0, families: Sequence[str] | None = None, difficulty: str = "easy"
) -> list[dict]:
    """``n`` labelled functions: pairs (vulnerable + fixed) of one template instance share a ``group``.

    Deterministic for (n, seed, families, difficulty); instance ``g`` uses family ``families[g % len]``
    and its own random stream, so a smaller corpus is a prefix of a larger one (up to the last,
    unpaired record). ``difficulty``: "easy" (short functions plus a soft risky-API cue, what small
    models learn in a CPU minute) or "hard" (statement order and data flow only).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    chosen = _check_families(families)
    profile = _check_difficulty(difficulty)
    records: list[dict] = []
    seen: dict[str, int] = {}
    g = 0
    while len(records) < n:
        family = chosen[g % len(chosen)]
        for attempt in range(_MAX_ATTEMPTS):
            rng = random.Random(f"synthetic:{seed}:{g}:{attempt}")
            inst = _instance(family, rng, profile)
            keys = (_normalized(inst.vuln[1]), _normalized(inst.fixed[1]))
            if keys[0] != keys[1] and not any(k in seen for k in keys):
                break
        else:  # pragma: no cover - needs ~50 consecutive collisions
            raise RuntimeError(f"could not draw a unique function for instance {g} ({family})")
        pair = [(1, inst.vuln), (0, inst.fixed)]
        if rng.random() < 0.5:
            pair.reverse()
        for target, (variant, src) in pair[: n - len(records)]:
            seen[_normalized(src)] = target
            records.append({
                "id": f"synth-{len(records):06d}",
                "func": src,
                "target": target,
                "cwe": CWE[family],
                "family": family,
                "variant": variant,
                "group": f"synth-g{g:05d}",
                "lang": "c",
                "project": "synthetic",
            })
        g += 1
    return records


# ----------------------------------------------------------------------------- corpus files


def _to_record(d: dict) -> CodeRecord:
    meta = {k: v for k, v in d.items() if k not in ("id", "func", "target", "lang")}
    return CodeRecord(id=d["id"], func=d["func"], target=d["target"], lang=d["lang"], meta=meta)


def _summary(
    parts: dict[str, list[dict]], n: int, seed: int, fractions: Sequence[float], difficulty: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "seed": seed, "difficulty": difficulty, "fractions": list(fractions),
                           "files": dict(SPLIT_FILES), "splits": {}}
    for name, recs in parts.items():
        fam = Counter(r["family"] for r in recs)
        fam_label = Counter((r["family"], r["target"]) for r in recs)
        out["splits"][name] = {
            "count": len(recs),
            "labels": {str(t): sum(1 for r in recs if r["target"] == t) for t in (0, 1)},
            "groups": len({r["group"] for r in recs}),
            "families": {f: {"count": fam[f], "0": fam_label[(f, 0)], "1": fam_label[(f, 1)]} for f in sorted(fam)},
        }
    return out


def write_synthetic_corpus(
    out_dir: str | Path,
    n: int = 4000,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    difficulty: str = "easy",
) -> dict[str, Path]:
    """Write train/valid/test JSON Lines plus summary.json; splits are grouped and label-stratified.

    Grouping by template instance keeps the vulnerable and fixed renderings of one instance in the same
    split, so a test score measures generalisation to unseen instances, not recall of a near-twin.
    """
    _check_difficulty(difficulty)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = generate_records(n, seed, difficulty=difficulty)
    by_id = {r["id"]: r for r in records}
    split = split_records([_to_record(r) for r in records], fractions, group_field="group", seed=seed)
    parts = {name: [by_id[r.id] for r in recs] for name, recs in split.items()}
    paths = {name: write_records_jsonl(parts[name], out / fname) for name, fname in SPLIT_FILES.items()}
    atomic_write_json(out / "summary.json", _summary(parts, n, seed, fractions, difficulty))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``streamguard data synth``: write the embedded corpus and print one line per split."""
    ap = argparse.ArgumentParser(prog="streamguard data synth", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="number of functions (default 4000)")
    ap.add_argument("--out", required=True, help="output folder for train/valid/test.jsonl and summary.json")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--difficulty", choices=DIFFICULTIES, default="easy",
                    help="easy: short functions with a soft risky-API cue (default); hard: order and data flow only")
    ap.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error(f"--n must be at least 1, got {args.n}")
    try:
        paths = write_synthetic_corpus(args.out, args.n, args.seed, tuple(args.fractions), args.difficulty)
    except ValueError as exc:
        ap.error(str(exc))
    summary = read_json(Path(args.out) / "summary.json")["splits"]
    for name, path in paths.items():
        part = summary[name]
        print(f"{name}: {part['count']} functions ({part['labels']['1']} vulnerable, {part['labels']['0']} fixed, "
              f"{part['groups']} groups) -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
