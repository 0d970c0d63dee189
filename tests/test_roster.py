"""Rosters as LMS exports give them, and the one-line error of each bad row."""

import pytest

from pipeline import roster
from pipeline.errors import ConfigError
from pipeline.roster import Student


def write(tmp_path, content, encoding="utf-8"):
    path = tmp_path / "roster.csv"
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    "content",
    [
        'id,name,group\na1,Ana Pérez,A\nb2,"Núñez, Luis",B\n',
        # Excel in a Spanish locale: a byte-order mark, semicolons, CRLF, a blank last line
        "\ufeffid;name;group\r\na1;Ana Pérez;A\r\nb2;Núñez, Luis;B\r\n\r\n",
        "ID\tName\tGroup\na1\tAna Pérez\tA\nb2\tNúñez, Luis\tB\n",
    ],
)
def test_comma_semicolon_and_tab_exports_read_the_same(tmp_path, content):
    assert roster.read(write(tmp_path, content)) == [
        Student("a1", "Ana Pérez", "A"),
        Student("b2", "Núñez, Luis", "B"),
    ]


def test_group_is_optional(tmp_path):
    assert roster.read(write(tmp_path, "name,id\nAna,7\n")) == [Student("7", "Ana", "")]


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,name\na1,Ana\na1,Luis\n", "row 3: id 'a1' again (first in row 2)"),
        ("id,name\na1,Ana\n ,Luis\n", "row 3: empty id"),
        ("id,name\na1,Ana\nb2,Núñez, Luis\n", "row 3: 3 fields for 2 columns (a stray delimiter?"),
        ("id,name\na1\n", "row 2: 1 fields for 2 columns"),
        ("name,group\nAna,A\n", "row 1: the columns are name, group"),
        ("id,name,email\na1,Ana,a@x\n", "row 1: the columns are id, name, email"),
        ("id,name\n", "no students below the header"),
        ("", "empty"),
        ('id,name\na1,"Ana\n', "row"),
    ],
)
def test_a_bad_row_is_named_in_one_line(tmp_path, content, message):
    with pytest.raises(ConfigError) as error:
        roster.read(write(tmp_path, content))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_another_encoding_names_its_row(tmp_path):
    path = write(tmp_path, "id,name\na1,Ana\nb2,Núñez\n", encoding="latin-1")
    with pytest.raises(ConfigError, match=r"row 3: not UTF-8 \(byte 0xfa\); export the roster"):
        roster.read(path)


def test_a_missing_roster_is_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the roster"):
        roster.read(tmp_path / "absent.csv")
