"""SQL schemas (DESIGN §7): ``CREATE TABLE`` / ``CREATE TYPE`` text read into tables.

The SQL is *parsed* with sqlglot, never executed: no database is opened, no file is
touched, and statements other than ``CREATE TABLE`` and ``CREATE TYPE ... AS ENUM`` are
ignored with a :class:`SchemaWarning`. What comes out, :class:`SqlSchema`, is the
seed-independent part of a schema plan (tables, keys, what each column means);
``plan.schema.plan_sql_schema`` draws row and label counts from it per seed.

Everything the parser or our checks reject raises :class:`SchemaError` (a
``ValueError``) naming the table, the column and the line where they are known.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import unicodedata
import warnings

import msgspec

from plurel_fast.config import SQL_DIALECTS as DIALECTS

__all__ = [
    "DIALECTS",
    "SchemaError",
    "SchemaWarning",
    "SqlColumn",
    "SqlForeignKey",
    "SqlSchema",
    "SqlTable",
    "detect_dialect",
    "parse_sql_schema",
]

# What a feature column means (SqlColumn.kind).
NUMERICAL = "numerical"  # float output
INTEGER = "integer"  # numerical, rounded to nullable Int64
BOOLEAN = "boolean"
LABELS = "labels"  # enum / CHECK IN: categorical with the labels as written
TEXT = "text"  # categorical with synthetic labels <column>_<k>
TIME = "time"  # DATE / TIMESTAMP / DATETIME


class SchemaError(ValueError):
    """A SQL schema cannot be used; the message names the table, column and line."""


class SchemaWarning(UserWarning):
    """Part of a SQL schema is ignored (a statement, a constraint we do not enforce)."""


class SqlColumn(msgspec.Struct, frozen=True):
    """A non-key column of a SQL table.

    ``labels`` are the enum / ``CHECK IN`` values exactly as written (kind ``labels``);
    ``label_type`` says what they are: ``str``, ``int`` or ``float`` (the output
    column then holds strings, Int64 or Float64).
    """

    name: str
    kind: str
    not_null: bool = False
    labels: tuple[str, ...] | None = None
    label_type: str = "str"
    line: int | None = None


class SqlForeignKey(msgspec.Struct, frozen=True):
    column: str
    parent: str  # the referenced table, by its CREATE TABLE name
    line: int | None = None


class SqlTable(msgspec.Struct, frozen=True):
    """One ``CREATE TABLE``: its key columns, feature columns and column order."""

    name: str
    pkey: str | None
    foreign_keys: tuple[SqlForeignKey, ...]
    columns: tuple[SqlColumn, ...]  # non-key columns, as written
    column_order: tuple[str, ...]  # every column, as written
    line: int | None = None


class SqlSchema(msgspec.Struct, frozen=True):
    """The tables of a SQL schema in statement order, and the dialect read."""

    dialect: str
    tables: tuple[SqlTable, ...]


# ----------------------------------------------------------------------------- dialect

_DIALECT_HINTS = {
    "mysql": (r"\bAUTO_INCREMENT\b", r"\bENGINE\s*=", r"`", r"\bUNSIGNED\b",
              r"\bDEFAULT\s+CHARSET\b", r"\b(?:TINYTEXT|MEDIUMTEXT|LONGTEXT)\b"),
    "sqlite": (r"\bAUTOINCREMENT\b", r"\bWITHOUT\s+ROWID\b", r"\)\s*STRICT\b",
               r"\bATTACH\s+DATABASE\b", r"\bPRAGMA\b"),
    "duckdb": (r"\b(?:U?HUGEINT|UBIGINT|UINTEGER|USMALLINT|UTINYINT)\b",
               r"\bCREATE\s+OR\s+REPLACE\s+TABLE\b", r"\bSTRUCT\s*\(", r"\bMAP\s*\("),
    "postgres": (r"\b(?:BIG|SMALL)?SERIAL\b", r"\bAS\s+ENUM\b", r"::", r"\bTIMESTAMPTZ\b",
                 r"\bJSONB\b", r"\bBYTEA\b"),
}


def detect_dialect(sql: str) -> str:
    """The dialect whose telltale keywords ``sql`` uses most; postgres when none does."""
    scores = {
        name: sum(bool(re.search(p, sql, re.IGNORECASE)) for p in hints)
        for name, hints in _DIALECT_HINTS.items()
    }
    best = max(scores.values())
    if best == 0 or scores["postgres"] == best:
        return "postgres"
    return next(name for name, score in scores.items() if score == best)


# -------------------------------------------------------------------------- file names

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}
_MAX_NAME_BYTES = 200  # + ".parquet" stays under the 255-byte limit of file names


def _unsafe_name(name: str, *, table: bool) -> str | None:
    """Why ``name`` cannot name an output file (a table) or part of one (a column)."""
    if not name or not name.strip():
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "it contains a control character"
    if name in (".", "..") or name.startswith("."):
        return "it starts with '.'"
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        return f"it is longer than {_MAX_NAME_BYTES} bytes"
    if table and (name.endswith((" ", ".")) or ":" in name):
        return "it ends with a space or '.', or holds ':', which some file systems reject"
    if table and name.split(".")[0].strip().lower() in _RESERVED:
        return "it is a reserved file name on Windows"
    return None


# ------------------------------------------------------------------------------- types

def _type_kinds():
    from sqlglot.expressions import DataType

    T = DataType.Type
    names = {
        BOOLEAN: ("BOOLEAN",),
        INTEGER: ("TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT", "INT128", "INT256",
                  "UTINYINT", "USMALLINT", "UMEDIUMINT", "UINT", "UBIGINT", "UINT128",
                  "UINT256", "SERIAL", "SMALLSERIAL", "BIGSERIAL", "YEAR"),
        NUMERICAL: ("FLOAT", "DOUBLE", "DECIMAL", "DECIMAL32", "DECIMAL64", "DECIMAL128",
                    "DECIMAL256", "DECFLOAT", "BIGDECIMAL", "UDECIMAL", "UDOUBLE", "MONEY",
                    "SMALLMONEY"),
        TIME: ("DATE", "DATE32", "DATETIME", "DATETIME2", "DATETIME64", "SMALLDATETIME",
               "TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMPLTZ", "TIMESTAMPNTZ", "TIMESTAMP_S",
               "TIMESTAMP_MS", "TIMESTAMP_NS"),
        TEXT: ("TEXT", "VARCHAR", "CHAR", "NCHAR", "NVARCHAR", "BPCHAR", "TINYTEXT",
               "MEDIUMTEXT", "LONGTEXT", "NAME", "FIXEDSTRING"),
    }
    return {getattr(T, n): kind for kind, ns in names.items() for n in ns if hasattr(T, n)}


_SUPPORTED = ("BOOLEAN, integer types, FLOAT/DOUBLE/REAL/DECIMAL/NUMERIC, "
              "DATE/TIMESTAMP/DATETIME, TEXT/VARCHAR/CHAR, enums")


# ------------------------------------------------------------------------------- parse

def parse_sql_schema(sql: str, dialect: str | None = None) -> SqlSchema:
    """Read the ``CREATE TABLE`` and ``CREATE TYPE ... AS ENUM`` statements of ``sql``.

    Parameters
    ----------
    sql : str
        SQL text; it is parsed, never executed.
    dialect : str, optional
        One of ``DIALECTS``; by default :func:`detect_dialect` picks one.

    Returns
    -------
    SqlSchema

    Raises
    ------
    SchemaError
        Unparsable statements, unsupported types, composite keys, foreign keys to an
        unknown table or column or to the table itself, foreign-key cycles, names
        unsafe as file names. Other statements only warn (:class:`SchemaWarning`).
    """
    if not isinstance(sql, str):
        raise SchemaError(f"a SQL schema must be text, got {type(sql).__name__}")
    if dialect is None:
        dialect = detect_dialect(sql)
    if dialect not in DIALECTS:
        raise SchemaError(f"unknown SQL dialect {dialect!r}; known: {', '.join(DIALECTS)}")
    reader = _Reader(sql, dialect)
    reader.read()
    for message in reader.warnings:
        warnings.warn(message, SchemaWarning, stacklevel=2)
    return _resolve(reader.tables, dialect)


@functools.lru_cache(maxsize=16)
def parse_cached(sql: str, dialect: str | None) -> SqlSchema:
    """:func:`parse_sql_schema`, once per (text, dialect) in a process (plans per seed)."""
    return parse_sql_schema(sql, dialect)


@contextlib.contextmanager
def _quiet_sqlglot():
    """sqlglot logs what it cannot parse; we raise SchemaError for it instead."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _describe(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "it is nested too deeply"
    return f"the parser failed ({type(err).__name__}: {_first_line(err)})"


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class _Raw(msgspec.Struct):
    """A table as written, before foreign keys are resolved."""

    name: str
    line: int | None
    columns: list  # [(name, line, DataType | None, constraints)]
    pkey: list  # [(columns, line)]
    fkeys: list  # [(columns, parent, parent columns, line)]
    checks: list  # [(expression, line)]
    not_null: set


class _Reader:
    def __init__(self, sql: str, dialect: str):
        from sqlglot.dialects.dialect import Dialect

        self.sql = sql
        self.dialect = dialect
        self.d = Dialect.get_or_raise(dialect)
        self.enums: dict[str, tuple[tuple[str, ...], str]] = {}  # lower name -> labels
        self.tables: list[SqlTable] = []
        self.warnings: list[str] = []

    def read(self):
        from sqlglot.errors import TokenError
        from sqlglot.tokens import TokenType

        try:
            tokens = self.d.tokenize(self.sql)
        except TokenError as err:
            raise SchemaError(f"cannot read the SQL ({self.dialect}): {_first_line(err)}") from None
        except Exception as err:  # sqlglot failing on odd input is still a bad schema
            raise SchemaError(f"cannot read the SQL ({self.dialect}): {_describe(err)}") from None
        statements, current = [], []
        for tok in tokens:
            if tok.token_type == TokenType.SEMICOLON:
                statements.append(current)
                current = []
            else:
                current.append(tok)
        statements.append(current)
        raw_tables = []
        for stmt in statements:
            if not stmt:
                continue
            what = _statement_kind(stmt)
            if what is None:
                words = " ".join(t.text for t in stmt[:3])
                self.warnings.append(
                    f"line {stmt[0].line}: statement '{words} ...' ignored: only CREATE TABLE "
                    "and CREATE TYPE ... AS ENUM are read (nothing is ever executed)"
                )
                continue
            expression = self._parse(stmt, what)
            if what == "TYPE":
                self._enum_type(expression, stmt)
            else:
                raw_tables.append(self._table(expression, stmt))
        if not raw_tables:
            raise SchemaError("the SQL schema has no CREATE TABLE statement")
        self.tables = [self._finish(raw) for raw in raw_tables]

    def _parse(self, stmt, what: str):
        from sqlglot import exp
        from sqlglot.errors import ErrorLevel, ParseError

        line = stmt[0].line
        try:
            with _quiet_sqlglot():
                parser = self.d.parser(error_level=ErrorLevel.RAISE)
                parsed = [e for e in parser.parse(stmt, self.sql) if e is not None]
        except ParseError as err:
            info = err.errors[0] if err.errors else {}
            where = f"line {info.get('line', line)}, column {info.get('col', '?')}"
            near = f" near {info['highlight']!r}" if info.get("highlight") else ""
            raise SchemaError(
                f"cannot parse the CREATE {what} statement starting at line {line} "
                f"({self.dialect}): {info.get('description', _first_line(err))} at {where}{near}; "
                "if the schema is in another dialect, set Config.schema_dialect"
            ) from None
        except Exception as err:  # sqlglot failing on odd input is still a bad schema
            raise SchemaError(
                f"cannot parse the CREATE {what} statement starting at line {line} "
                f"({self.dialect}): {_describe(err)}"
            ) from None
        if what == "TYPE" and parsed and isinstance(parsed[0], exp.Command):
            parsed = self._parse_type_as_postgres(stmt)
        if len(parsed) != 1 or not isinstance(parsed[0], exp.Create):
            raise SchemaError(
                f"cannot parse the CREATE {what} statement starting at line {line} "
                f"({self.dialect}): the parser does not understand it; if the schema is in "
                "another dialect, set Config.schema_dialect"
            )
        return parsed[0]

    def _parse_type_as_postgres(self, stmt):
        """DuckDB's parser leaves CREATE TYPE unparsed; PostgreSQL's reads the same text."""
        import sqlglot

        text = self.sql[stmt[0].start : stmt[-1].end + 1]
        try:
            with _quiet_sqlglot():
                return [e for e in sqlglot.parse(text, read="postgres") if e is not None]
        except Exception as err:
            raise SchemaError(
                f"cannot parse the CREATE TYPE statement starting at line {stmt[0].line}: "
                f"{_describe(err)}"
            ) from None

    # ---------------------------------------------------------------- statements

    def _enum_type(self, create, stmt):
        from sqlglot import exp

        line = stmt[0].line
        target = create.this
        name = target.name if isinstance(target, exp.Table) else ""
        dtype = create.expression
        if not (isinstance(dtype, exp.DataType) and dtype.this == exp.DataType.Type.ENUM):
            self.warnings.append(
                f"line {line}: CREATE TYPE {name} ignored: only CREATE TYPE ... AS ENUM is read"
            )
            return
        labels, label_type = self._labels(dtype.expressions, f"enum type {name!r} (line {line})")
        self.enums[name.lower()] = (labels, label_type)

    def _table(self, create, stmt) -> _Raw:
        from sqlglot import exp

        line = stmt[0].line
        schema = create.this
        if create.kind != "TABLE" or not isinstance(schema, exp.Schema):
            name = schema.name if isinstance(schema, exp.Table) else "?"
            raise SchemaError(
                f"table {name!r} (line {line}): CREATE TABLE without a column list "
                "(AS SELECT, LIKE, ...) is not supported; write the columns out"
            )
        table = schema.this
        name = table.name
        line = _line(table.this) or line
        why = _unsafe_name(name, table=True)
        if why:
            raise SchemaError(
                f"table {name!r} (line {line}) cannot be used: {why}, and the table name "
                "becomes an output file name; rename the table"
            )
        raw = _Raw(name=name, line=line, columns=[], pkey=[], fkeys=[], checks=[],
                   not_null=set())
        for item in schema.expressions:
            self._table_item(raw, item)
        if not raw.columns:
            raise SchemaError(f"table {name!r} (line {line}) has no columns")
        return raw

    def _table_item(self, raw: _Raw, item):
        from sqlglot import exp

        if isinstance(item, exp.Identifier):  # SQLite: a column without a type
            self._column(raw, item.name, _line(item), None, [])
        elif isinstance(item, exp.ColumnDef):
            self._column(raw, item.name, _line(item.this), item.args.get("kind"),
                         item.args.get("constraints") or [])
        elif isinstance(item, exp.Constraint):
            for sub in item.expressions:
                self._table_item(raw, sub)
        elif isinstance(item, exp.PrimaryKey):
            raw.pkey.append(([_ident(e) for e in item.expressions], _line(item) or raw.line))
        elif isinstance(item, exp.ForeignKey):
            cols = [_ident(e) for e in item.expressions]
            self._reference(raw, cols, item.args.get("reference"), _first_line_of(item) or raw.line)
        elif isinstance(item, exp.CheckColumnConstraint):
            raw.checks.append((item.this, _first_line_of(item) or raw.line))
        # UNIQUE, indexes, LIKE options and the rest do not change what is generated.

    def _column(self, raw: _Raw, name: str, line, dtype, constraints):
        from sqlglot import exp

        where = f"table {raw.name!r}, column {name!r} (line {line})"
        why = _unsafe_name(name, table=False)
        if why:
            raise SchemaError(f"{where} cannot be used: {why}; rename the column")
        if any(c[0].lower() == name.lower() for c in raw.columns):
            raise SchemaError(f"{where}: the column is defined twice")
        raw.columns.append((name, line, dtype, constraints))
        for c in constraints:
            kind = c.args.get("kind") if isinstance(c, exp.ColumnConstraint) else c
            if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                raw.pkey.append(([name], line))
            elif isinstance(kind, exp.NotNullColumnConstraint) and not kind.args.get("allow_null"):
                raw.not_null.add(name)
            elif isinstance(kind, exp.Reference):
                self._reference(raw, [name], kind, line)
            elif isinstance(kind, exp.CheckColumnConstraint):
                raw.checks.append((kind.this, line))

    def _reference(self, raw: _Raw, cols, ref, line):
        from sqlglot import exp

        target = ref.this if ref is not None else None
        if isinstance(target, exp.Schema):
            parent, parent_cols = target.this.name, [_ident(e) for e in target.expressions]
        elif isinstance(target, exp.Table):
            parent, parent_cols = target.name, []
        else:
            raise SchemaError(
                f"table {raw.name!r} (line {line}): foreign key ({', '.join(cols)}) has no "
                "REFERENCES table"
            )
        if len(cols) != 1 or len(parent_cols) > 1:
            raise SchemaError(
                f"table {raw.name!r} (line {line}): composite foreign key "
                f"({', '.join(cols)}) -> {parent}({', '.join(parent_cols)}) is not supported "
                "yet; use a single-column key"
            )
        raw.fkeys.append((cols[0], parent, parent_cols[0] if parent_cols else None, line))

    def _labels(self, values, where: str) -> tuple[tuple[str, ...], str]:
        """Enum / IN-list labels exactly as written, and whether they are str, int or float."""
        from sqlglot import exp

        labels, numeric = [], []
        for v in values:
            sign = ""
            if isinstance(v, exp.Neg):
                sign, v = "-", v.this
            if isinstance(v, exp.Null):
                continue
            if not isinstance(v, exp.Literal):
                raise SchemaError(f"{where}: value {v.sql()} is not a literal")
            labels.append(sign + v.this if not v.is_string else v.this)
            numeric.append(not v.is_string)
        labels = list(dict.fromkeys(labels))  # a label written twice is one label
        if not labels:
            raise SchemaError(f"{where}: the list of values is empty")
        if not all(numeric):
            return tuple(labels), "str"
        if all(re.fullmatch(r"-?\d+", s) for s in labels):
            return tuple(labels), "int"
        return tuple(labels), "float"

    # ----------------------------------------------------------- table semantics

    def _finish(self, raw: _Raw) -> tuple[SqlTable, list]:
        from sqlglot import exp

        columns = {c[0]: c for c in raw.columns}
        by_lower = {c[0].lower(): c[0] for c in raw.columns}

        def column_of(name, line, what):
            found = columns.get(name) or columns.get(by_lower.get(name.lower(), ""))
            if found is None:
                raise SchemaError(
                    f"table {raw.name!r} (line {line}): {what} names column {name!r}, which "
                    f"the table does not have; its columns: {', '.join(columns)}"
                )
            return found[0]

        pkey = None
        if len(raw.pkey) > 1:
            raise SchemaError(f"table {raw.name!r} (line {raw.line}): two PRIMARY KEY clauses")
        if raw.pkey:
            cols, line = raw.pkey[0]
            if len(cols) != 1:
                raise SchemaError(
                    f"table {raw.name!r} (line {line}): composite primary key "
                    f"({', '.join(cols)}) is not supported yet; use a single-column key"
                )
            pkey = column_of(cols[0], line, "PRIMARY KEY")
        fkeys, seen = [], set()
        for col, parent, parent_col, line in raw.fkeys:
            col = column_of(col, line, "FOREIGN KEY")
            if col == pkey:
                raise SchemaError(
                    f"table {raw.name!r}, column {col!r} (line {line}): a column that is both "
                    "the primary key and a foreign key is not supported"
                )
            if col in seen:
                raise SchemaError(
                    f"table {raw.name!r}, column {col!r} (line {line}): two foreign keys on "
                    "one column"
                )
            seen.add(col)
            fkeys.append((col, parent, parent_col, line))

        labels = {}
        for check, line in raw.checks:
            found = self._check_in(check)
            if found is None or found[0].lower() not in by_lower:
                self.warnings.append(
                    f"table {raw.name!r} (line {line}): CHECK ({check.sql()}) is not enforced; "
                    "only CHECK (column IN (...)) shapes the data"
                )
                continue
            col = by_lower[found[0].lower()]
            if col in labels:
                self.warnings.append(
                    f"table {raw.name!r}, column {col!r} (line {line}): a second CHECK IN is "
                    "ignored; the first one gives the labels"
                )
                continue
            labels[col] = self._labels(found[1], f"table {raw.name!r}, column {col!r} CHECK IN "
                                                  f"(line {line})")

        features = []
        keys = {pkey, *(f[0] for f in fkeys)}
        kinds = _type_kinds()
        for name, line, dtype, _ in raw.columns:
            if name in keys:
                continue
            where = f"table {raw.name!r}, column {name!r} (line {line})"
            not_null = name in raw.not_null
            if name in labels:
                values, label_type = labels[name]
                features.append(SqlColumn(name, LABELS, not_null, values, label_type, line))
                continue
            if dtype is None:
                raise SchemaError(f"{where} has no type; give it one of: {_SUPPORTED}")
            t = dtype.this
            if t == exp.DataType.Type.ENUM:
                values, label_type = self._labels(dtype.expressions, f"{where} ENUM")
                features.append(SqlColumn(name, LABELS, not_null, values, label_type, line))
            elif t == exp.DataType.Type.USERDEFINED and dtype.args.get("kind") is not None:
                type_name = _ident(dtype.args["kind"]).split(".")[-1]
                if type_name.lower() not in self.enums:
                    raise SchemaError(
                        f"{where}: type {type_name!r} is not supported (no CREATE TYPE "
                        f"{type_name} AS ENUM before it); supported: {_SUPPORTED}"
                    )
                values, label_type = self.enums[type_name.lower()]
                features.append(SqlColumn(name, LABELS, not_null, values, label_type, line))
            elif t in kinds:
                features.append(SqlColumn(name, kinds[t], not_null, line=line))
            else:
                raise SchemaError(
                    f"{where}: type {dtype.sql(dialect=self.dialect)} is not supported; "
                    f"supported: {_SUPPORTED}; key columns may have any type"
                )
        return SqlTable(
            name=raw.name,
            pkey=pkey,
            foreign_keys=(),  # resolved against the other tables by _resolve
            columns=tuple(features),
            column_order=tuple(c[0] for c in raw.columns),
            line=raw.line,
        ), fkeys

    @staticmethod
    def _check_in(check):
        """(column, values) of ``column IN (values)``, else None."""
        from sqlglot import exp

        while isinstance(check, exp.Paren):
            check = check.this
        if (isinstance(check, exp.In) and isinstance(check.this, exp.Column)
                and check.expressions and not check.args.get("query")):
            return check.this.name, check.expressions
        return None


def _resolve(read: list, dialect: str) -> SqlSchema:
    """Foreign keys to known tables' primary keys; no self-reference, no cycle."""
    tables = [t for t, _ in read]
    by_name: dict[str, SqlTable] = {}
    by_lower: dict[str, SqlTable] = {}
    for t in tables:
        other = by_lower.get(t.name.lower())
        if other is not None:
            raise SchemaError(
                f"table {t.name!r} (line {t.line}) is defined twice (first at line "
                f"{other.line}); table names are compared without case, as file names may be"
            )
        by_name[t.name] = by_lower[t.name.lower()] = t

    resolved = []
    for t, fkeys in read:
        out = []
        for col, parent, parent_col, line in fkeys:
            where = f"table {t.name!r}, column {col!r} (line {line})"
            p = by_name.get(parent) or by_lower.get(parent.lower())
            if p is None:
                raise SchemaError(
                    f"{where}: foreign key to unknown table {parent!r}; tables: "
                    f"{', '.join(x.name for x in tables)}"
                )
            if p is t:
                raise SchemaError(
                    f"{where}: foreign key to its own table {t.name!r}; self-references are "
                    "not supported (a table's rows are generated after the rows they "
                    "reference); drop the REFERENCES clause or point it at another table"
                )
            if p.pkey is None:
                raise SchemaError(
                    f"{where}: foreign key to table {p.name!r}, which has no primary key; "
                    "give it a single-column PRIMARY KEY"
                )
            if parent_col is not None and parent_col.lower() != p.pkey.lower():
                known = parent_col.lower() in {c.lower() for c in p.column_order}
                what = "is not its primary key" if known else "does not exist"
                raise SchemaError(
                    f"{where}: foreign key to column {parent_col!r} of table {p.name!r}, which "
                    f"{what}; foreign keys must reference the primary key {p.pkey!r}"
                )
            out.append(SqlForeignKey(col, p.name, line))
        resolved.append(msgspec.structs.replace(t, foreign_keys=tuple(out)))

    cycle = _find_cycle(resolved)
    if cycle:
        path = " -> ".join(cycle)
        raise SchemaError(
            f"foreign keys form a cycle: {path} (each table references the next); rows "
            "cannot be generated parents first, so break the cycle by dropping one REFERENCES"
        )
    return SqlSchema(dialect=dialect, tables=tuple(resolved))


def _find_cycle(tables) -> list[str]:
    """A cycle of the 'references' graph as table names (first name repeated), or []."""
    refs = {t.name: [fk.parent for fk in t.foreign_keys] for t in tables}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for start in refs:
        if state.get(start):
            continue
        path, stack = [start], [iter(refs[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(refs[nxt]))
    return []


def _statement_kind(tokens) -> str | None:
    """'TABLE' or 'TYPE' for CREATE [OR REPLACE] [TEMP ...] TABLE / TYPE, else None."""
    words = [t.text.upper() for t in tokens[:6]]
    if not words or words[0] != "CREATE":
        return None
    for w in words[1:]:
        if w in ("TABLE", "TYPE"):
            return w
        if w not in ("OR", "REPLACE", "TEMP", "TEMPORARY", "UNLOGGED", "GLOBAL", "LOCAL"):
            return None
    return None


def _ident(e) -> str:
    return e.name if hasattr(e, "name") else str(e)


def _line(e) -> int | None:
    return e.meta.get("line") if e is not None and hasattr(e, "meta") else None


def _first_line_of(e) -> int | None:
    from sqlglot import exp

    for ident in e.find_all(exp.Identifier):
        line = _line(ident)
        if line is not None:
            return line
    return None
