"""Reading one cell as a number, a date or one of our words, and deciding per column how a file writes
them: tables of cases, no database."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from crm_app.services.importing.cells import (
    COMMA,
    DAY_FIRST,
    EITHER_COMMA,
    EITHER_POINT,
    MONTH_FIRST,
    PLAIN,
    POINT,
    SAYS_COMMA,
    SAYS_POINT,
    CellProblem,
    custom_value,
    date_shape,
    decide_date_order,
    decide_decimal,
    known_word,
    number_shape,
    read_amount,
    read_date,
    read_employees,
    read_number,
    trim_cell,
)


@pytest.mark.parametrize("text, shape", [
    ("1532", PLAIN), ("-7", PLAIN), ("1 532", PLAIN), ("1'532", PLAIN), ("1e-05", PLAIN),
    ("12.5", SAYS_POINT), ("1,234.5", SAYS_POINT), ("1,234,567", SAYS_POINT), ("0.532", SAYS_POINT),
    ("2,5", SAYS_COMMA), ("1.234,5", SAYS_COMMA), ("1.234.567", SAYS_COMMA), ("1 234,5", SAYS_COMMA),
    ("€ 3 400", PLAIN), ("$1,200", EITHER_COMMA), ("12%", PLAIN), ("1,532", EITHER_COMMA),
    ("1.532", EITHER_POINT),
    ("1234,567", SAYS_COMMA), ("0,532", SAYS_COMMA),
    ("12,34,567", None), ("1,2345", SAYS_COMMA), ("abc", None), ("2026-01-15", None), ("15.01.2026", None),
    ("555 123 4567", None), ("N/A", None), ("-", None), ("1.234,5.6", None),
])
def test_what_a_written_number_says_about_its_column(text, shape):
    assert number_shape(text) == shape


@pytest.mark.parametrize("text, decimal, value", [
    ("1,532", POINT, "1532"), ("1,532", COMMA, "1.532"), ("1.532", POINT, "1.532"), ("1.532", COMMA, "1532"),
    ("$1,200", POINT, "1200"), ("12%", POINT, "0.12"), ("2,5", COMMA, "2.5"), ("1.234,5", COMMA, "1234.5"),
    ("€ 3 400", COMMA, "3400"), ("€ 3 400", POINT, "3400"), ("1 234,50 €", COMMA, "1234.50"),
    ("-$1,200.50", POINT, "-1200.50"), ("USD 12,000", POINT, "12000"), ("12.000 EUR", COMMA, "12000"),
    ("1'234.5", POINT, "1234.5"), ("\u22125", POINT, "-5"), ("1e-05", POINT, "0.00001"),
])
def test_a_number_is_read_with_its_columns_decimal_separator(text, decimal, value):
    assert read_number(text, decimal).value == Decimal(value)


@pytest.mark.parametrize("text, decimal", [("2,5", POINT), ("1,234.5", COMMA), ("12,34", POINT),
                                           ("abc", POINT), ("$", POINT), ("1.2.3", POINT)])
def test_a_number_written_against_its_columns_convention_is_not_a_number(text, decimal):
    assert read_number(text, decimal) is None


def test_a_column_decides_its_decimal_separator_from_the_values_that_settle_it():
    # "2,5" settles it: every "1,532" of the column is then one and a half thousandths... no: 1.532.
    reading = decide_decimal("Views", Counter({SAYS_COMMA: 3, EITHER_COMMA: 5}), {SAYS_COMMA: "2,5",
                                                                                   EITHER_COMMA: "1,532"})
    assert (reading.decimal, reading.note) == (COMMA, "")
    reading = decide_decimal("Amount", Counter({SAYS_POINT: 1, EITHER_COMMA: 5}), {SAYS_POINT: "1,234.50",
                                                                                    EITHER_COMMA: "1,532"})
    assert (reading.decimal, reading.note) == (POINT, "")


def test_a_column_nothing_settles_is_read_with_a_point_and_the_note_says_so():
    reading = decide_decimal("Size", Counter({EITHER_COMMA: 4, PLAIN: 9}),
                             {EITHER_COMMA: "1,532", PLAIN: "12"})
    assert reading.decimal == POINT
    assert '"1,532" could be 1532 or 1.532' in reading.note and "read as 1532" in reading.note


def test_a_column_written_both_ways_is_read_as_most_of_it_and_the_note_names_the_others():
    reading = decide_decimal("Budget", Counter({SAYS_POINT: 2, SAYS_COMMA: 9}), {SAYS_POINT: "1,234.5",
                                                                                 SAYS_COMMA: "2,5"})
    assert reading.decimal == COMMA
    assert '"2,5" (9 values' in reading.note and '"1,234.5" (2,' in reading.note
    declared = decide_decimal("Budget", Counter({SAYS_POINT: 2, SAYS_COMMA: 9}), {}, declared=POINT)
    assert declared.decimal == POINT


def test_deal_values_and_company_sizes():
    assert read_amount("$1,200.50") == Decimal("1200.50")
    assert read_amount("1.234,5", COMMA) == Decimal("1234.50")
    assert read_employees("1,532") == 1532
    assert read_employees("1.532", COMMA) == 1532
    for bad in ("12%", "$50", "1.5", "-4", "lots"):
        with pytest.raises(CellProblem, match="whole number of employees"):
            read_employees(bad)
    with pytest.raises(CellProblem, match="not an amount"):
        read_amount("12%")
    with pytest.raises(CellProblem, match="zero or more"):
        read_amount("-$5")


def test_custom_values_are_numbers_in_a_column_of_numbers_and_plain_otherwise():
    assert custom_value("1,532", POINT) == 1532 and isinstance(custom_value("1,532", POINT), int)
    assert custom_value("2,5", COMMA) == 2.5
    assert custom_value("12%", POINT) == 0.12
    assert custom_value("n/a", POINT) == "n/a"
    assert custom_value("1,532") == "1,532"  # a column of words keeps what looks like a number as typed
    assert custom_value("17") == 17 and custom_value("-2.5e3") == -2500.0
    assert custom_value("1e999", POINT) == "1e999"  # no Infinity in JSON


@pytest.mark.parametrize("text, shape", [
    ("31/03/2026", "day_first"), ("03/31/2026", "month_first"), ("03/04/2026", "either_date"),
    ("03.04.2026", "dotted_date"), ("2026-03-04", "iso_date"), ("2026-03-04 10:00", "iso_date"),
    ("hello", None),
])
def test_what_a_date_says_about_its_column(text, shape):
    assert date_shape(text) == shape


def test_a_date_column_is_day_first_or_month_first_by_its_values_or_by_the_users_choice():
    assert decide_date_order("Created", Counter({"day_first": 1, "either_date": 5}), {}) == (DAY_FIRST, "")
    assert decide_date_order("Created", Counter({"month_first": 1}), {}) == (MONTH_FIRST, "")
    order, problem = decide_date_order("Created", Counter({"either_date": 5}), {"either_date": "03/04/2026"})
    assert 'a date like "03/04/2026" could be day first or month first' in problem
    chosen = decide_date_order("Created", Counter({"either_date": 5}), {}, chosen=MONTH_FIRST)
    assert chosen == (MONTH_FIRST, "")
    order, problem = decide_date_order("Created", Counter({"day_first": 1, "month_first": 1}),
                                       {"day_first": "31/03/2026", "month_first": "03/31/2026"})
    assert "with the day first" in problem and "with the month" in problem


def test_dates_are_read_in_the_chosen_order():
    assert read_date("03/04/2026", DAY_FIRST).month == 4
    assert read_date("03/04/2026", MONTH_FIRST).month == 3
    assert read_date("2026-03-04").day == 4
    assert read_date("15 Jan 2026", DAY_FIRST).month == 1
    assert read_date("01/15/2026 2:30 PM", MONTH_FIRST).hour == 14
    with pytest.raises(CellProblem, match="is not a date"):
        read_date("31/03/2026", MONTH_FIRST)


@pytest.mark.parametrize("word, ours", [
    ("1", "won"), ("0", "lost"), ("Yes", "won"), ("no", "lost"), ("TRUE", "won"), ("false", "lost"),
    ("Won", "won"), ("lost", "lost"), ("Converted", "won"), ("maybe", None),
])
def test_outcomes_are_understood_as_crm_exports_write_them(word, ours):
    assert known_word(word, "outcome") == ours


def test_cells_keep_what_was_typed_but_the_spaces_around_it():
    assert trim_cell("  Ada  ") == "Ada"
    assert trim_cell("\t=1+1") == "\t=1+1"  # a tab is typed, and removing it would leave a formula
    assert trim_cell("\r+SUM(1)") == "\r+SUM(1)"
    assert trim_cell(" =1+1") == " =1+1"  # spaces too, where removing them would leave a formula
    assert trim_cell(" -5 ") == " -5"
    assert trim_cell("a\tb ") == "a\tb"
