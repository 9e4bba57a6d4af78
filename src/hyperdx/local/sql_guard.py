"""Which SQL the read-only query interfaces run: one read statement, no escape hatches.

The read sessions also run with chDB's ``readonly=2`` (the engine refuses writes and DDL),
but that still allows table functions that reach files, URLs or other processes, ``INTO
OUTFILE``, several statements in one call, and ``SETTINGS`` that lift our limits. This module
refuses those before chDB sees the text, with ClickHouse's own error codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

READONLY = 164
SYNTAX_ERROR = 62

#: Statement heads that only read.
_READ_HEADS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})
#: Statement heads that write or administer: ClickHouse's READONLY error.
_WRITE_HEADS = frozenset(
    re.split(
        r"\s+",
        "INSERT ALTER DROP CREATE TRUNCATE SYSTEM ATTACH DETACH RENAME OPTIMIZE GRANT REVOKE "
        "KILL DELETE UPDATE SET USE BACKUP RESTORE EXCHANGE UNDROP MOVE REPLACE UPSERT",
    )
)
#: Statement keywords that may follow a WITH list.
_STATEMENT_WORDS = frozenset(
    {"SELECT", "INSERT", "ALTER", "DROP", "CREATE", "TRUNCATE", "SYSTEM", "DELETE", "UPDATE"}
)
#: Table functions that read or write outside the database (files, network, processes,
#: the Python process itself).
_OUTSIDE_FUNCTIONS = frozenset(
    name.lower()
    for name in re.split(
        r"\s+",
        "file fileCluster url urlCluster s3 s3Cluster gcs oss cosn azureBlobStorage "
        "azureBlobStorageCluster hdfs hdfsCluster remote remoteSecure cluster "
        "clusterAllReplicas executable executablePool mysql postgresql mongodb redis sqlite "
        "odbc jdbc input iceberg icebergS3 icebergAzure icebergHDFS icebergLocal "
        "icebergCluster icebergS3Cluster deltaLake deltaLakeLocal deltaLakeCluster hudi "
        "hudiCluster python arrowStream pandas ytsaurus paimon",
    )
)
_OUTSIDE_WORDS = frozenset({"OUTFILE", "INFILE"})
#: Settings that bound a query: a client may lower them, never lift or unset them.
LIMIT_SETTINGS = frozenset(
    {
        "max_execution_time",
        "max_result_rows",
        "max_result_bytes",
        "max_memory_usage",
        "max_threads",
    }
)
#: Settings a client may not change at all (they switch the limits or write protection).
_LOCKED_SETTINGS = frozenset(
    {
        "readonly",
        "allow_ddl",
        "result_overflow_mode",
        "timeout_overflow_mode",
        "max_execution_time_leaf",
        "timeout_overflow_mode_leaf",
        "allow_introspection_functions",
        "max_memory_usage_for_user",
        "session_timezone",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^'\\]|\\.|'')*'?)
  | (?P<quoted>`(?:[^`\\]|\\.|``)*`?|"(?:[^"\\]|\\.|"")*"?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>\d[\w.]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class GuardError(ValueError):
    """The statement is refused; ``code``/``name`` are ClickHouse's for the same refusal."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    depth: int


@dataclass
class Statement:
    """One vetted read statement: its text (trailing ``;`` removed), its ``FORMAT`` clause
    if any, and the settings of its ``SETTINGS`` clauses."""

    sql: str
    output_format: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


def tokens(sql: str) -> list[Token]:
    """Code tokens (no spaces/comments) with their parenthesis depth."""
    out: list[Token] = []
    depth = 0
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind in ("space", "comment"):
            continue
        if text == ")":
            depth = max(0, depth - 1)
        out.append(Token(kind, text, match.start(), depth))
        if text == "(":
            depth += 1
    return out


def _readonly(message: str) -> GuardError:
    return GuardError(READONLY, "READONLY", f"{message}: hyperdx local is read-only here")


def _value(tok: Token) -> str:
    if tok.kind == "string":
        return tok.text[1:-1].replace("''", "'").replace("\\'", "'")
    return tok.text


def check_setting(name: str, value: str, limits: Mapping[str, int]) -> None:
    """Refuse a client setting that would lift a limit or the write protection."""
    key = name.lower()
    if key in _LOCKED_SETTINGS:
        raise _readonly(f"Cannot modify '{name}' setting")
    if key in LIMIT_SETTINGS and key in limits:
        cap = limits[key]
        try:
            wanted = float(value)
        except ValueError:
            raise _readonly(f"Cannot set '{name}' to {value!r}") from None
        if wanted <= 0 or wanted > cap:
            raise _readonly(f"Cannot raise '{name}' above {cap} (asked {value})")


def refuse_write_head(sql: str) -> None:
    """Refuse at once a statement whose head writes (``INSERT ...``), e.g. the ``query=``
    part of an insert whose data follows in the body: the body is then never read."""
    toks = tokens(sql)
    if toks and toks[0].kind == "word" and toks[0].text.upper() in _WRITE_HEADS:
        raise _readonly(f"Cannot execute {toks[0].text.upper()} query")


def vet(sql: str, limits: Mapping[str, int] | None = None) -> Statement:
    """The statement if it only reads; else :class:`GuardError` with ClickHouse's code."""
    limits = limits or {}
    toks = tokens(sql)
    while toks and toks[-1].text == ";":
        sql = sql[: toks[-1].start]
        toks.pop()
    if not toks:
        raise GuardError(SYNTAX_ERROR, "SYNTAX_ERROR", "Empty query")
    if any(t.text == ";" for t in toks):
        raise GuardError(SYNTAX_ERROR, "SYNTAX_ERROR", "Multi-statements are not allowed")
    for tok in toks:
        if tok.kind in ("string", "quoted") and tok.text[-1] != tok.text[0]:
            raise GuardError(SYNTAX_ERROR, "SYNTAX_ERROR", "Unterminated quoted text")
    words = [t for t in toks if t.kind == "word"]
    head = toks[0].text.upper() if toks[0].kind == "word" else toks[0].text
    if head == "(":
        head = next((t.text.upper() for t in words), "")
    if head in _WRITE_HEADS:
        raise _readonly(f"Cannot execute {head} query")
    if head not in _READ_HEADS:
        raise GuardError(
            SYNTAX_ERROR,
            "SYNTAX_ERROR",
            f"Syntax error: failed at position {toks[0].start + 1} ({toks[0].text!r}): "
            "not a statement hyperdx local runs (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS)",
        )
    if head == "WITH":
        top_words = [t.text.upper() for t in words if t.depth == 0]
        verb = next((w for w in top_words[1:] if w in _STATEMENT_WORDS), "SELECT")
        if verb != "SELECT":
            raise _readonly(f"Cannot execute WITH ... {verb} query")
    statement = Statement(sql)
    for i, tok in enumerate(toks):
        upper = tok.text.upper()
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        calls = tok.kind == "word" and nxt is not None and nxt.text == "("
        if calls and tok.text.lower() in _OUTSIDE_FUNCTIONS:
            raise _readonly(f"Table function {tok.text}() reaches outside the database")
        if tok.kind == "word" and upper in _OUTSIDE_WORDS:
            raise _readonly(f"{upper} reaches outside the database")
        qualified = i > 0 and toks[i - 1].text == "."
        if tok.kind != "word" or qualified or (nxt is not None and nxt.text in ("(", ".")):
            continue
        if upper == "FORMAT" and tok.depth == 0 and nxt is not None:
            statement.output_format = _value(nxt)
        if upper == "SETTINGS":
            statement.settings.update(_settings_clause(toks, i + 1))
    for name, value in statement.settings.items():
        check_setting(name, value, limits)
    return statement


def _settings_clause(toks: list[Token], i: int) -> dict[str, str]:
    """``name = value[, ...]`` from ``toks[i]`` on."""
    out: dict[str, str] = {}
    while i + 2 < len(toks) and toks[i + 1].text == "=":
        name, value = toks[i], toks[i + 2]
        j = i + 3
        if value.text == "-" and j <= len(toks) - 1:  # negative numbers
            out[_value(name)] = "-" + toks[j].text
            j += 1
        else:
            out[_value(name)] = _value(value)
        if j < len(toks) and toks[j].text == ",":
            i = j + 1
        else:
            break
    return out
