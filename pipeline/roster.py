"""A class roster: one row per student (`id`, `name`, optional `group`), as LMS exports give it.

Exports differ in their delimiter (a comma, or a semicolon where the decimal separator is a
comma, as Spanish spreadsheets write) and often start with a byte-order mark; both are read.
Anything else that would assign a variant to the wrong student (a duplicate or empty id, a row
with a stray delimiter, another encoding than UTF-8) is bad input naming the row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError

COLUMNS = ("id", "name", "group")  # `group` may be missing: an empty group for everyone
DELIMITERS = (",", ";", "\t")
MAX_BYTES = 16 * 2**20  # 300 students take a few kilobytes; more is not a roster


@dataclass(frozen=True)
class Student:
    id: str
    name: str
    group: str = ""


def read(path: Path) -> list[Student]:
    """The roster's students in file order; a ConfigError (exit 2) names the first bad row."""
    text = _text(Path(path))
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ConfigError(f"roster {path}: empty; the first row names the columns id,name[,group]")
    delimiter = _delimiter(lines[0])
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [column.strip().lower() for column in next(rows)]
        index = _columns(path, header)
        students, seen = [], {}
        for row in rows:
            number = rows.line_num  # the file's line, as an editor shows it
            if not any(field.strip() for field in row):
                continue  # a blank line, as spreadsheets leave at the end
            students.append(_student(path, number, row, header, index, seen))
    except csv.Error as error:
        raise ConfigError(f"roster {path}, row {rows.line_num}: {error}") from None
    if not students:
        raise ConfigError(f"roster {path}: no students below the header")
    return students


def _text(path: Path) -> str:
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read the roster {path}: {error.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"roster {path}: more than {MAX_BYTES // 2**20} MiB, not a class roster")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        row = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"roster {path}, row {row}: not UTF-8 (byte 0x{raw[error.start]:02x}); "
            "export the roster as CSV UTF-8"
        ) from None


def _delimiter(header: str) -> str:
    """The delimiter the header uses: the one of DELIMITERS it holds most of."""
    return max(DELIMITERS, key=header.count)


def _columns(path: Path, header: list[str]) -> dict[str, int]:
    unknown = [column for column in header if column not in COLUMNS]
    missing = [column for column in ("id", "name") if column not in header]
    if missing or unknown or len(set(header)) != len(header):
        raise ConfigError(
            f"roster {path}, row 1: the columns are {', '.join(header) or 'none'}; "
            "a roster has id, name and optionally group, each once"
        )
    return {column: header.index(column) for column in header}


def _student(
    path: Path, number: int, row: list[str], header: list[str], index: dict, seen: dict
) -> Student:
    if len(row) != len(header):
        raise ConfigError(
            f"roster {path}, row {number}: {len(row)} fields for {len(header)} columns "
            "(a stray delimiter? quote a name that holds one)"
        )
    values = {column: row[position].strip() for column, position in index.items()}
    student_id = values["id"]
    if not student_id:
        raise ConfigError(f"roster {path}, row {number}: empty id")
    if student_id in seen:
        raise ConfigError(
            f"roster {path}, row {number}: id {student_id!r} again "
            f"(first in row {seen[student_id]})"
        )
    seen[student_id] = number
    return Student(id=student_id, name=values["name"], group=values.get("group", ""))
