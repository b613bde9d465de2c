"""The leads list's address holds its view: what a page writes, it reads back the same (property test)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from crm_app.db.queries import SORTS
from crm_app.state.leads import MAX_URL_PAGE, SCOPES, SOURCES, STAGES, TIERS, URL_DEFAULTS, list_address, view_from_query

searches = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200)
views = st.fixed_dictionaries({
    "q": searches, "scope": st.sampled_from(SCOPES), "tier": st.sampled_from(TIERS),
    "stage": st.sampled_from(STAGES), "source": st.sampled_from(SOURCES), "sort": st.sampled_from(list(SORTS)),
    "page": st.integers(1, MAX_URL_PAGE).map(str),
})


def _read(address: str):
    return view_from_query(dict(parse_qsl(urlsplit(address).query, keep_blank_values=True)))


@given(views)
def test_an_address_reads_back_as_the_view_it_was_written_from(view):
    address = list_address(view)
    assert address.startswith("/leads")
    if view == URL_DEFAULTS:
        assert address == "/leads" and _read(address) is None  # nothing to say: the plain address
    else:
        assert _read(address) == view


@given(st.dictionaries(st.sampled_from(list(URL_DEFAULTS)), st.text(max_size=30), min_size=1))
def test_any_typed_query_gives_a_view_the_page_can_show(params):
    view = view_from_query(params)
    assert view["scope"] in SCOPES and view["tier"] in TIERS and view["stage"] in STAGES
    assert view["source"] in SOURCES and view["sort"] in SORTS
    assert 1 <= int(view["page"]) <= MAX_URL_PAGE and "\x00" not in view["q"]
