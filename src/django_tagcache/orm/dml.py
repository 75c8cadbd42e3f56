"""Which tables a SQL statement writes: read from its first words, without a SQL parser.

Used by the SQL watcher on every statement that is not a SELECT, so it is a few regular
expressions, each of which matches in one way only (no exponential backtracking on odd input).
No Django in here.
"""

from __future__ import annotations

import re

# A name, bare or quoted (backticks: MySQL/MariaDB; double quotes: SQLite, PostgreSQL), maybe
# qualified by a schema or database: the last part is the table.
_NAME = r"""(?:`[^`]+`|"[^"]+"|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|"[^"]+"|[\w$]+))*"""
_PART = re.compile(r"""`([^`]+)`|"([^"]+)"|([\w$]+)""")
# Leading whitespace and comments, then the verb and its modifiers: INSERT [OR IGNORE|REPLACE]
# (SQLite), INSERT [LOW_PRIORITY] [IGNORE] and REPLACE (MySQL/MariaDB), UPDATE [OR ...]
# [LOW_PRIORITY] [IGNORE], DELETE [LOW_PRIORITY] [QUICK] [IGNORE]. ON CONFLICT / ON DUPLICATE KEY
# come after the table, so need nothing here.
_HEAD = re.compile(
    # Each step takes one space or one whole comment (which cannot hold "*/"): one way to match, so
    # a long run of them can never backtrack exponentially.
    r"(?:\s|/\*(?:[^*]|\*(?!/))*\*/|--[^\n]*(?:\n|$))*"
    r"(INSERT|REPLACE|UPDATE|DELETE)\b"
    r"(?:\s+(?:OR\s+\w+|LOW_PRIORITY|HIGH_PRIORITY|DELAYED|QUICK|IGNORE)\b)*\s*",
    re.IGNORECASE,
)
_INTO = re.compile(rf"INTO\s+({_NAME})", re.IGNORECASE)
_FROM = re.compile(rf"FROM\s+({_NAME})", re.IGNORECASE)
# MySQL's multi-table DELETE names its targets before FROM; its UPDATE writes (conservatively:
# may write) every table it joins, listed before SET after commas and JOIN keywords.
_TARGETS = re.compile(rf"({_NAME})\s*(?:,\s*|(?=FROM\b))", re.IGNORECASE)
_UPDATED = re.compile(rf"(?:^|,|\bJOIN\b)\s*({_NAME})", re.IGNORECASE)
_SET = re.compile(r"\bSET\b", re.IGNORECASE)
_ONE_UPDATED = re.compile(rf"({_NAME})\s+SET\b", re.IGNORECASE)


def _table(name: str) -> str:
    quote = name[0]
    if quote in '`"' and name.count(quote) == 2 and name[-1] == quote:  # the usual: one quoted name
        return name[1:-1]
    if name.isidentifier():
        return name
    last = list(_PART.finditer(name))[-1]
    return last.group(1) or last.group(2) or last.group(3)


def written_tables(sql: str) -> tuple[str, ...]:
    """The tables a statement writes to (first the one named first), or () if it writes none.

    Covers the DML Django's SQLite, PostgreSQL and MySQL/MariaDB backends generate, and the
    same forms written by hand. Statements starting with ``WITH`` (a CTE) are not looked into.
    """
    head = _HEAD.match(sql)
    if head is None:
        return ()
    verb = head.group(1).upper()
    rest = sql[head.end() :]
    if verb in ("INSERT", "REPLACE"):
        into = _INTO.match(rest)
        return (_table(into.group(1)),) if into else ()
    if verb == "DELETE":
        single = _FROM.match(rest)
        if single:
            return (_table(single.group(1)),)
        return tuple(_table(target) for target in _TARGETS.findall(rest[: _end_of_targets(rest)]))
    single = _ONE_UPDATED.match(rest)
    if single:  # the common case: UPDATE t SET
        return (_table(single.group(1)),)
    end = _SET.search(rest)
    refs = rest[: end.start()] if end else rest
    return tuple(dict.fromkeys(_table(name) for name in _UPDATED.findall(refs)))


def _end_of_targets(rest: str) -> int:
    found = _FROM.search(rest)
    return found.start() + len("FROM") if found else 0
