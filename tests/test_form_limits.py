"""Forms say every bad field at once, and a field's length limit is the same in the input, the message
and the database column."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from crm_app.db.models import Lead, User
from crm_app.domain import Role, Source
from crm_app.services import accounts
from crm_app.services.accounts import CurrentUser
from crm_app.services.errors import InvalidInput
from crm_app.services.lead_detail import LEAD_TEXT_LIMITS, LeadEdit, validated_edit
from crm_app.state.auth import USER_LIMITS
from crm_app.state.new_lead import FORM_LIMITS
from tests.conftest import NOW
from tests.factories import TEST_PASSWORD, make_user

GOOD = dict(name="Ada Lovelace", email="ada@engines.example", company="Engines", company_size="120",
            deal_value="12,000", source=Source.WEBSITE.value, owner_id="")


def test_the_lead_forms_limits_are_the_leads_tables_column_lengths():
    for field, limit in LEAD_TEXT_LIMITS.items():
        assert Lead.__table__.c[field].type.length == limit, field
    for field in ("name", "email", "company"):
        assert FORM_LIMITS[field] == LEAD_TEXT_LIMITS[field], field


def test_the_user_forms_limits_are_the_users_tables_column_lengths():
    assert User.__table__.c["name"].type.length == USER_LIMITS["name"]
    assert User.__table__.c["email"].type.length == USER_LIMITS["email"]
    assert USER_LIMITS["password"] == accounts.MAX_PASSWORD


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(sorted(LEAD_TEXT_LIMITS)), extra=st.integers(min_value=-3, max_value=3))
def test_a_text_field_is_refused_exactly_past_its_limit_and_the_message_says_the_limit(field, extra):
    limit = LEAD_TEXT_LIMITS[field]
    text = "a" * (limit + extra)
    if field == "email":  # a valid address of that length
        text = "a" * (limit + extra - len("@x.example")) + "@x.example"
    edit = LeadEdit(**{**GOOD, field: text})
    if extra <= 0:
        assert validated_edit(edit)[field] == text
    else:
        with pytest.raises(InvalidInput) as refused:
            validated_edit(edit)
        assert set(refused.value.errors) == {field}
        assert f"max {limit} characters" in refused.value.errors[field]


def test_every_bad_field_of_a_lead_is_reported_at_once():
    edit = LeadEdit(**{**GOOD, "name": " ", "email": "not-an-email", "company_size": "many", "deal_value": "lots",
                       "phone": "9" * 41})
    with pytest.raises(InvalidInput) as refused:
        validated_edit(edit)
    assert set(refused.value.errors) == {"name", "email", "company_size", "deal_value", "phone"}
    assert refused.value.field == "name" and str(refused.value) == refused.value.errors["name"]


def test_every_bad_field_of_a_new_user_is_reported_at_once(session: Session):
    admin_row = make_user(session, "Form Admin", role="admin")
    admin = CurrentUser(admin_row.id, admin_row.email, admin_row.name, Role.ADMIN)
    with pytest.raises(InvalidInput) as refused:
        accounts.create_user(session, admin, email="not-an-email", name="x" * 121, role="rep",
                             password="short", now=NOW)
    assert set(refused.value.errors) == {"email", "name", "password"}
    assert refused.value.errors["name"] == "Use at most 120 characters."
    # A taken email is reported beside another bad field too.
    with pytest.raises(InvalidInput) as refused:
        accounts.create_user(session, admin, email=admin_row.email, name="", role="rep", password=TEST_PASSWORD,
                             now=NOW)
    assert set(refused.value.errors) == {"email", "name"}
