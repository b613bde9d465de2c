"""Hostile and broken files (issue #17 item 2): each is refused with a sentence naming the row and column,
or saying what the file is, and stores nothing, in the service and on the command line."""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from crm_app import cli
from crm_app.services.importing import ImportMapping, ImportRejected, import_file, preview, validate_file
from tests.conftest import NOW
from tests.test_cli_import import cli_engine  # noqa: F401  (fixture)

HEADER = "Name,Email,Source,Note\n"
GOOD_ROW = "Ann,ann@example.com,Website,fine\n"
MAPPING = ImportMapping(columns={"Name": "name", "Email": "email", "Source": "source", "Note": "custom"})


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("leads.csv", HEADER + GOOD_ROW)
    return buffer.getvalue()


# name -> (file bytes, what the message must say)
HOSTILE = {
    "nul_in_a_field": ((HEADER + GOOD_ROW + "Bo\x00b,bob@example.com,Website,x\n").encode(),
                       ("row 2", "Name", "NUL character")),
    "nul_in_a_custom_field": ((HEADER + GOOD_ROW + "Bob,bob@example.com,Website,a\x00b\n").encode(),
                              ("row 2", "Note", "NUL character")),
    "gzip_renamed_csv": (gzip.compress((HEADER + GOOD_ROW * 200).encode()), ("gzip-compressed",)),
    "xlsx_renamed_csv": (_zip_bytes(), ("zip archive",)),
    "random_bytes": (random.Random(17).randbytes(6000), ("not a CSV file",)),
    "cell_over_the_csv_limit": ((HEADER + GOOD_ROW + 'Bob,bob@example.com,Website,"' + "x" * 140_000 + '"\n')
                                .encode(), ("Row 2", "longer than 131,072 characters")),
    "unclosed_quote_bomb": ((HEADER + GOOD_ROW + '"' + "a" * 400_000).encode(),
                            ("Row 2", "longer than 131,072 characters", "quote")),
    "nul_in_the_header": (b"Name,Em\x00ail,Source\nAnn,ann@example.com,Website\n", ("Column 2", "NUL")),
}


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(HOSTILE[name][0])
    return path


def _problems(report) -> str:
    return " | ".join(f"row {e.row} {e.column}: {e.message}" for e in report.errors)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_is_refused_in_words_and_stores_nothing(session, tmp_path, name):
    path = _write(tmp_path, name)
    report = validate_file(path, MAPPING, now=NOW)
    assert not report.ok
    said = _problems(report)
    for words in HOSTILE[name][1]:
        assert words.lower() in said.lower(), said
    before = session.execute(text("SELECT count(*) FROM leads")).scalar_one()
    with pytest.raises(ImportRejected):
        import_file(session, path, MAPPING, now=NOW)
    assert session.execute(text("SELECT count(*) FROM leads")).scalar_one() == before


@pytest.mark.parametrize("name", ["nul_in_a_field", "gzip_renamed_csv", "random_bytes", "unclosed_quote_bomb"])
def test_the_command_line_says_what_is_wrong_with_a_hostile_file(cli_engine, tmp_path, capsys, name):  # noqa: F811
    path = _write(tmp_path, name)
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"columns": {"Name": "name", "Email": "email", "Source": "source", "Note": "custom"}}')
    assert cli.main(["import", str(path), "--mapping", str(mapping)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "Not imported: " in captured.out and str(path) in captured.out
    for words in HOSTILE[name][1]:
        assert words.lower() in captured.out.lower(), captured.out
    with cli_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM leads")).scalar_one() == 0


def test_a_file_name_with_braces_names_its_leads_literally(session, tmp_path):
    """"{0}.csv" once crashed the upload (the name template went through str.format)."""
    path = tmp_path / "{0}.csv"
    path.write_text("Email,Source\nann@example.com,Website\n")
    mapping = ImportMapping(columns={"Email": "email", "Source": "source"}, name_template="{0} {} row {row}")
    assert preview(path, mapping, now=NOW)[0].fields["Name"] == "{0} {} row 1"
    summary = import_file(session, path, mapping, now=NOW, file_name="{0}.csv")
    assert summary.created == 1
    name = session.execute(text("SELECT name FROM leads WHERE email = 'ann@example.com'")).scalar_one()
    assert name == "{0} {} row 1"
