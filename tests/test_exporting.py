"""CSV export: exactly the list's leads (filter, search, sort, all pages), readable by the importer;
and the signed link that guards the download."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from crm_app.api import EXPORT_PATH, EXPORT_PURPOSE, api
from crm_app.db.models import utcnow
from crm_app.db.queries import LeadFilter
from crm_app.domain import ActivityKind, Source, Stage
from crm_app.services import accounts
from crm_app.services.exporting import filter_to_dict, stream_leads_csv
from crm_app.services.importing import ImportMapping, guess_mapping, import_file
from crm_app.services.signed_links import InvalidLink, sign_link, verify_link
from tests.conftest import NOW
from tests.factories import TEST_PASSWORD, make_lead, make_user


def exported(session, flt: LeadFilter, sort: str = "score") -> list[dict[str, str]]:
    text = "".join(stream_leads_csv(session.connection(), flt, sort))
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def team(session):
    ria = make_user(session, "Ria Rep")
    leads = [
        make_lead(session, "Ada Lovelace", now=NOW, owner=ria, company="Engines", company_size=120,
                  source=Source.REFERRAL, deal_value=48000,
                  activities=[(ActivityKind.PRICING_REQUEST, timedelta(minutes=20))]),
        make_lead(session, "Grace Hopper", now=NOW, owner=ria, company="Compilers", source=Source.WEBINAR,
                  stage=Stage.CONTACTED, deal_value=12000),
        make_lead(session, "Alan Turing", now=NOW, company="Bletchley", company_size=800, source=Source.LINKEDIN),
    ]
    leads[2].custom_fields = {"Industry": "Defence", "Budget": 5000}
    session.add(leads[2])
    session.commit()
    return ria, leads


def test_export_has_every_matching_lead_in_list_order_with_reasons_in_words(session, team):
    ria, _ = team
    rows = exported(session, LeadFilter(owner_id=ria.id))
    assert [r["Name"] for r in rows] == ["Ada Lovelace", "Grace Hopper"]
    ada = rows[0]
    assert (ada["Score"], ada["Tier"], ada["Source"], ada["Owner"], ada["Deal value"]) == (
        "65", "Warm", "Referral", "Ria Rep", "48000.00")
    assert "+30 Asked for pricing" in ada["Why (score reasons)"]
    assert "+10 " in ada["Why (score reasons)"]
    by_value = exported(session, LeadFilter(), sort="value")
    assert [r["Name"] for r in by_value] == ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


def test_search_and_filters_narrow_the_export_and_custom_fields_become_columns(session, team):
    rows = exported(session, LeadFilter(search="bletch"))
    assert [r["Name"] for r in rows] == ["Alan Turing"]
    assert (rows[0]["Industry"], rows[0]["Budget"], rows[0]["Owner"]) == ("Defence", "5000", "")
    assert exported(session, LeadFilter(stage="contacted"))[0]["Name"] == "Grace Hopper"
    assert [r["Name"] for r in exported(session, LeadFilter(tier="warm"))] == ["Ada Lovelace"]
    assert exported(session, LeadFilter(tier="hot")) == []


def test_an_export_imports_back_without_duplicates(session, team, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("".join(stream_leads_csv(session.connection(), LeadFilter())))
    header = next(csv.reader(path.open()))
    columns = {**guess_mapping(header), "Owner": "ignore", "Score": "ignore", "Tier": "ignore",
               "Why (score reasons)": "ignore", "In stage since": "ignore", "Pipeline CRM id": "ignore"}
    summary = import_file(session, path, ImportMapping(columns=columns), now=NOW)
    assert (summary.created, summary.updated) == (0, 0)
    assert summary.skipped == 3


def test_signed_links_expire_and_refuse_tampering():
    token = sign_link("export-leads", {"tier": "hot"}, now=NOW, key=b"k")
    assert verify_link("export-leads", token, now=NOW + timedelta(minutes=4), key=b"k") == {"tier": "hot"}
    with pytest.raises(InvalidLink, match="expired"):
        verify_link("export-leads", token, now=NOW + timedelta(minutes=6), key=b"k")
    with pytest.raises(InvalidLink, match="not valid"):
        verify_link("export-leads", token, now=NOW, key=b"another key")
    body, _, mac = token.partition(".")
    forged = sign_link("export-leads", {"tier": "cold"}, now=NOW, key=b"k").partition(".")[0] + "." + mac
    with pytest.raises(InvalidLink):
        verify_link("export-leads", forged, now=NOW, key=b"k")
    with pytest.raises(InvalidLink, match="something else"):
        verify_link("import", token, now=NOW, key=b"k")


# --- The download route: a link lasts only as long as the sign-in it was made in (issue #17, item 4) ---


@pytest.fixture
def signed_in(engine, web_engine):
    """A rep with one lead, signed in; committed, because the route reads on connections of its own
    (as the owner for the session check, as the web app's login for the rows). Removed afterwards."""
    with Session(engine, expire_on_commit=False) as owner:
        rep = make_user(owner, "Xavier Exporter")
        lead = make_lead(owner, "Exported Lead", now=utcnow(), owner=rep)
        token, _ = accounts.sign_in(owner, email=rep.email, password=TEST_PASSWORD, now=utcnow())
        yield owner, rep, token
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM leads WHERE id = :id"), {"id": lead.id})
        conn.execute(text("DELETE FROM sign_in_attempts WHERE email = :e"), {"e": rep.email})
        conn.execute(text("DELETE FROM audit_log WHERE actor_id = :id"), {"id": rep.id})
        conn.execute(text("DELETE FROM users WHERE id = :id"), {"id": rep.id})


def _get(url: str) -> httpx.Response:
    """A GET to the app's backend routes (crm_app/api.py), in process."""
    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://crm.test") as client:
            return await client.get(url)

    return asyncio.run(get())


def _download(owner: Session, rep, token: str):
    """What the Leads page's Export button does (state/leads.export_csv), then the browser's GET."""
    session_id = accounts.live_session_id(owner, token, utcnow())
    assert session_id is not None
    link = sign_link(EXPORT_PURPOSE, {**filter_to_dict(LeadFilter(), "score"), "viewer": rep.id, "session": session_id},
                     now=utcnow())
    return lambda: _get(f"{EXPORT_PATH}?token={link}")


def test_an_export_link_stops_working_when_its_user_signs_out(signed_in):
    owner, rep, token = signed_in
    download = _download(owner, rep, token)
    first = download()
    assert first.status_code == 200 and "Exported Lead" in first.text
    accounts.sign_out(owner, token, utcnow())
    after = download()
    assert after.status_code == 403
    assert "has ended" in after.text and "sign in and export again" in after.text
    assert "Exported Lead" not in after.text


def test_an_export_link_stops_working_when_its_user_is_deactivated(signed_in):
    owner, rep, token = signed_in
    download = _download(owner, rep, token)
    assert download().status_code == 200
    # Only the account changes here (deactivating also signs out, which the test above covers).
    owner.execute(text("UPDATE users SET is_active = false WHERE id = :id"), {"id": rep.id})
    owner.commit()
    refused = download()
    assert refused.status_code == 403 and "deactivated" in refused.text and "Exported Lead" not in refused.text


def test_an_export_link_names_its_session(signed_in):
    """A link signed with the right key but for another user's session, or for none, is refused."""
    owner, rep, token = signed_in
    session_id = accounts.live_session_id(owner, token, utcnow())
    for claims in ({"viewer": rep.id}, {"viewer": rep.id + 1, "session": session_id}):
        link = sign_link(EXPORT_PURPOSE, {**filter_to_dict(LeadFilter(), "score"), **claims}, now=utcnow())
        response = _get(f"{EXPORT_PATH}?token={link}")
        assert response.status_code == 403 and "Exported Lead" not in response.text
