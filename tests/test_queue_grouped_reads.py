"""The action queue read group by group (a large book's, services/queue.py) against the one-pass
statement (a small book's, and the only one before), on generated books with several reps, the pool, snoozes, contacts and
follow-ups: the same items in the same order on every page, the same counts below the cap and the cap
above it, for a rep and for a manager acting under row-level security; and a rep never sees another
rep's lead through the new reads."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crm_app.db.models import FollowUp, Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.scoring import tier_for
from crm_app.services.leads import add_activity, check_activity
from crm_app.services.queue import GROUPS, action_queue
from tests.conftest import NOW
from tests.factories import acting, make_lead, make_user



def _reference(session, owner_id, group=None, limit=1000, offset=0):
    """(counts per group, [(lead id, group)]) as the one-pass statement reads them (a small book's)."""
    page = action_queue(session, owner_id=owner_id, now=NOW, limit=limit, offset=offset, group=group,
                        count_cap=10**9, small_book=10**9)
    return {g.kind: g.count for g in page.groups}, [(i.lead_id, i.kind) for i in page.items]


def _same_as_reference(session, owner_id, cap, page_size, walk_slack):
    counts, everything = _reference(session, owner_id)
    for group in (None, *GROUPS):
        whole = everything if group is None else [item for item in everything if item[1] == group]
        paged, offset = [], 0
        while True:
            page = action_queue(session, owner_id=owner_id, now=NOW, limit=page_size, offset=offset,
                                group=group, count_cap=cap, small_book=0, walk_slack=walk_slack)
            assert {g.kind: (g.count, g.capped) for g in page.groups} == {
                kind: (min(n, cap), n > cap) for kind, n in counts.items()}
            if not page.items:
                break
            assert [i.position for i in page.items] == list(range(offset + 1, offset + len(page.items) + 1))
            paged += [(i.lead_id, i.kind) for i in page.items]
            offset += page_size
        assert paged == whole, group
        # A page read on its own equals the reference's page (the words come from the same rows).
        if whole:
            middle = len(whole) // 2
            page = action_queue(session, owner_id=owner_id, now=NOW, limit=page_size, offset=middle, group=group,
                                count_cap=cap, small_book=0, walk_slack=walk_slack)
            assert [(i.lead_id, i.kind) for i in page.items] == _reference(
                session, owner_id, group, limit=page_size, offset=middle)[1]


KINDS = [K.PRICING_REQUEST, K.DEMO_REQUEST, K.EMAIL_RECEIVED, K.PAGE_VISIT, K.EMAIL_OPENED, K.CALL, K.EMAIL_SENT,
         K.MEETING]
minutes_ago = st.integers(min_value=1, max_value=60 * 24 * 6)
# Leads engaged at the same moment (a bulk load, an import), so that walks by last engagement meet ties.
same_moment = st.sampled_from([5, 5, 30])
a_lead = st.fixed_dictionaries({
    "owner": st.sampled_from(["ria", "ria", "sam", "pool"]),
    "score": st.sampled_from([10, 45, 69, 70, 70, 85, 99]),
    "value": st.sampled_from([0, 500, 500, 9000]),
    "turned_ago": minutes_ago,
    "stage": st.sampled_from([Stage.NEW, Stage.NEGOTIATION, Stage.PROPOSAL, Stage.WON]),
    "entered_days": st.integers(min_value=1, max_value=40),
    "activities": st.lists(st.tuples(st.sampled_from(KINDS), st.one_of(same_moment, minutes_ago)), max_size=3),
    "follow_up": st.one_of(st.none(), st.tuples(st.sampled_from(["ria", "sam"]),
                                                 st.integers(min_value=-3000, max_value=500))),
    "risk": st.sampled_from([None, None, 30, 60, 90]),
    "snoozed": st.sampled_from([None, None, None, -60, 60]),
})


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(a_lead, min_size=1, max_size=14), st.sampled_from([1, 2, 1000]), st.sampled_from([1, 3, 25]),
       st.sampled_from([0, 100]))
def test_the_grouped_reads_page_and_count_as_the_single_statement_did(session, leads, cap, page_size, walk_slack):
    """`walk_slack` 0: a long group's walk starts at four leads per item wanted, so the walks stop short
    of the book and go on, as at a million leads."""
    users = {email: session.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email}).scalar()
             for email in ("ria@test.crm", "sam@test.crm", "meg@test.crm")}
    ria = users["ria@test.crm"] or make_user(session, "Ria Rep").id
    sam = users["sam@test.crm"] or make_user(session, "Sam Seller").id
    meg = users["meg@test.crm"] or make_user(session, "Meg Manager", role="manager").id
    owners = {"ria": ria, "sam": sam, "pool": None}
    with session.begin_nested() as example:
        for n, spec in enumerate(leads):
            risk = spec["risk"]
            lead = Lead(name=f"G{n}", source="website", stage=spec["stage"].value, owner_id=owners[spec["owner"]],
                        created_at=NOW - timedelta(days=60), stage_entered_at=NOW - timedelta(days=spec["entered_days"]),
                        score=spec["score"], tier=tier_for(spec["score"]).value, deal_value=spec["value"],
                        scored_at=NOW - timedelta(minutes=spec["turned_ago"]),
                        risk_points=risk, risk_level=None if risk is None else "high" if risk >= 55 else "medium")
            session.add(lead)
            session.flush()
            for kind, ago in spec["activities"]:
                add_activity(session, lead, check_activity(kind=kind, now=NOW, occurred_at=NOW - timedelta(minutes=ago)),
                             now=NOW)
            if spec["snoozed"] is not None:
                lead.snoozed_until = NOW + timedelta(minutes=spec["snoozed"])
                session.add(lead)
            if spec["follow_up"] is not None:
                who, due_in = spec["follow_up"]
                session.add(FollowUp(lead_id=lead.id, owner_id=owners[who], due_at=NOW + timedelta(minutes=due_in)))
            session.flush()

        # As the tables' owner (the command line), then as each user under row-level security.
        _same_as_reference(session, ria, cap, page_size, walk_slack)
        _same_as_reference(session, None, cap, page_size, walk_slack)
        with acting(session, ria) as as_ria:
            _same_as_reference(as_ria, ria, cap, page_size, walk_slack)
        with acting(session, meg) as as_meg:
            _same_as_reference(as_meg, None, cap, page_size, walk_slack)
            _same_as_reference(as_meg, sam, cap, page_size, walk_slack)
        example.rollback()
    session.expunge_all()


def test_a_rep_never_sees_another_reps_lead_through_the_grouped_reads(session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    hot = [(K.PRICING_REQUEST, timedelta(minutes=20))]
    mine = make_lead(session, "Mine", now=NOW, owner=ria, activities=hot, created_ago=timedelta(days=2))
    pool = make_lead(session, "Pool", now=NOW, activities=hot, created_ago=timedelta(days=2))
    # Sam's leads in every group, one of them carrying Ria's own overdue follow-up.
    theirs = [make_lead(session, f"Sams {n}", now=NOW, owner=sam, activities=hot, created_ago=timedelta(days=2))
              for n in range(3)]
    make_lead(session, "Sams stuck", now=NOW, owner=sam, stage=Stage.NEGOTIATION, created_ago=timedelta(days=30))
    for lead, due_in in ((theirs[0], -timedelta(hours=2)), (theirs[1], timedelta(minutes=30)),
                         (pool, -timedelta(hours=1))):
        session.add(FollowUp(lead_id=lead.id, owner_id=ria.id, due_at=NOW + due_in))
    session.commit()
    sams = {lead.id for lead in theirs} | set(session.execute(
        text("SELECT id FROM leads WHERE owner_id = :sam"), {"sam": sam.id}).scalars())

    with acting(session, ria.id) as as_ria:
        for cap in (1, 99):
            for group in (None, *GROUPS):
                for owner in (ria.id, sam.id, None):
                    page = action_queue(as_ria, owner_id=owner, now=NOW, limit=50, group=group, count_cap=cap,
                                        small_book=0)
                    assert not {i.lead_id for i in page.items} & sams
        for small_book in (0, 10**9):  # read group by group, and in one pass
            page = action_queue(as_ria, owner_id=ria.id, now=NOW, limit=50, small_book=small_book)
            assert {i.lead_id for i in page.items} == {mine.id, pool.id}  # hers, and the pool lead she promised
            assert action_queue(as_ria, owner_id=sam.id, now=NOW, small_book=small_book).total == 0
        # The follow-ups the queue reads past the policy: only hers on leads she may see, however asked.
        due = "SELECT lead_id FROM crm_follow_ups_due(:o, '-infinity', 'infinity', :rows, :others)"
        for owner in (ria.id, sam.id, None):
            for rows, others in ((None, False), (1, False), (None, True)):
                seen = as_ria.execute(text(due), {"o": owner, "rows": rows, "others": others}).scalars().all()
                assert set(seen) <= {pool.id, mine.id}
        assert set(as_ria.execute(text(due), {"o": ria.id, "rows": None, "others": False}).scalars()) == {pool.id}
        # At most `max_rows`, due first; `others_only`: those on leads not the owner's (none for everyone).
        assert as_ria.execute(text(due), {"o": ria.id, "rows": 1, "others": False}).scalars().all() == [pool.id]
        assert as_ria.execute(text(due), {"o": ria.id, "rows": None, "others": True}).scalars().all() == [pool.id]
        assert as_ria.execute(text(due), {"o": None, "rows": None, "others": True}).scalars().all() == []


def test_new_signals_engaged_at_the_same_moment_page_as_the_single_statement_did(session):
    """Leads engaged in the same second (as a bulk load or an import leaves them): the walk by last
    engagement is cut inside the tie, and the page still follows the group's order (signal time, then
    score, deal value, id), the newest signal sometimes a request made earlier than the last engagement."""
    ria = make_user(session, "Ria Rep")
    same = timedelta(minutes=5)
    for n in range(14):
        # Most asked for pricing in that second; some asked for a demo earlier and visited the site then.
        activities = [(K.PAGE_VISIT, same), (K.DEMO_REQUEST, timedelta(minutes=90))] if n % 4 == 1 else [
            (K.PRICING_REQUEST, same)]
        activities += [(K.EMAIL_OPENED, timedelta(days=2))] * (n % 7 == 3)  # a score that differs
        # Values rise with the id: the group's order runs against the ids within the tie.
        make_lead(session, f"Tie {n}", now=NOW, owner=ria, activities=activities, deal_value=500 * n,
                  created_ago=timedelta(days=3))
    session.commit()
    assert action_queue(session, owner_id=ria.id, now=NOW, small_book=10**9, count_cap=10**9).groups[0].count >= 10
    for page_size in (1, 2, 3, 5):
        _same_as_reference(session, ria.id, 1, page_size, walk_slack=0)
        _same_as_reference(session, None, 1, page_size, walk_slack=0)
        with acting(session, ria.id) as as_ria:
            _same_as_reference(as_ria, ria.id, 1, page_size, walk_slack=0)


def test_a_follow_up_group_counted_past_follow_ups_of_other_groups(session):
    """A follow-up group's count reads a few follow-ups per lead it counts to, due first, and reads on
    when those held too few members: here the first-due follow-ups are on leads with a new signal (the
    first group) or with another follow-up due before them, and the overdue and due-today members come
    after them."""
    ria = make_user(session, "Ria Rep")
    fresh = [(K.PRICING_REQUEST, timedelta(minutes=20))]
    for n in range(12):
        lead = make_lead(session, f"Asked {n}", now=NOW, owner=ria, activities=fresh, created_ago=timedelta(days=3))
        session.add(FollowUp(lead_id=lead.id, owner_id=ria.id, due_at=NOW - timedelta(hours=30 - n)))
        session.add(FollowUp(lead_id=lead.id, owner_id=ria.id, due_at=NOW + timedelta(minutes=n + 1)))
    twice = make_lead(session, "Twice", now=NOW, owner=ria, created_ago=timedelta(days=3))
    for n in range(10):  # its earliest stands for it: one member of the overdue group
        session.add(FollowUp(lead_id=twice.id, owner_id=ria.id, due_at=NOW - timedelta(hours=10, minutes=n)))
    late = [make_lead(session, f"Late {n}", now=NOW, owner=ria, created_ago=timedelta(days=3)) for n in range(2)]
    session.add(FollowUp(lead_id=late[0].id, owner_id=ria.id, due_at=NOW - timedelta(minutes=5)))
    session.add(FollowUp(lead_id=late[1].id, owner_id=ria.id, due_at=NOW + timedelta(minutes=50)))
    session.commit()
    page = action_queue(session, owner_id=ria.id, now=NOW, small_book=10**9, count_cap=10**9)
    assert {g.kind: g.count for g in page.groups if g.kind in ("overdue", "due")} == {"overdue": 2, "due": 1}
    for cap in (1, 2, 3):
        grouped = action_queue(session, owner_id=ria.id, now=NOW, small_book=0, count_cap=cap)
        assert {g.kind: (g.count, g.capped) for g in grouped.groups if g.kind in ("overdue", "due")} == {
            "overdue": (min(2, cap), 2 > cap), "due": (1, 1 > cap)}
        _same_as_reference(session, ria.id, cap, 25, walk_slack=0)
        with acting(session, ria.id) as as_ria:
            _same_as_reference(as_ria, ria.id, cap, 3, walk_slack=0)
