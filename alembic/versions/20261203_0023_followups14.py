"""follow-ups as the backbone, notifications, lost reasons

- `follow_ups.kind`: what the next step is (call, email, meeting); NULL for the older promises that
  did not say.
- `lost_reasons`: the team's list of why deals are lost (managers edit it in Settings), and on
  `leads` the reason and free text a deal was lost with (`lost_reason`, `lost_note`; cleared when
  the deal is reopened, by a trigger). The reason is copied as text, so renaming or removing a list entry keeps
  the history readable.
- `notifications`: what a user should hear about, each naming its lead. Written by the database
  itself (SECURITY DEFINER triggers below) and by the background sweep (follow-ups that fell due),
  so every writer (a page, the REST API, an import, the sweep) produces them the same way; the app
  role may only read its own and mark them read (row-level security on `user_id`). Each insert also
  sends `NOTIFY crm_leads, 'n<user id>'` on the live-update channel (crm_app/live.py), which the
  bell in the sidebar listens for.

  What notifies whom:
    pricing_request, demo_request  the lead's owner, when the prospect asks (an activity of that kind
                                   that happened in the last day: a backfill of old events is quiet),
                                   unless the owner logged it themself
    hot                            the owner, when the lead turns Hot after something the prospect
                                   did in the last day (an engine switch that re-ranks quiet leads
                                   is arithmetic, not news)
    assigned                       the new owner, when someone else gives them the lead
    at_risk                        every active manager and admin, when an owned open deal's risk
                                   turns High
    follow_up_due                  the follow-up's owner, once, when it falls due (the sweep)

Revision ID: 0023_followups14
Revises: 0022_forecast
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0023_followups14"
down_revision: Union[str, None] = "0022_forecast"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
FIXED_PATH = "pg_catalog, public, pg_temp"
TS = sa.DateTime(timezone=True)
KINDS = "'pricing_request', 'demo_request', 'hot', 'assigned', 'at_risk', 'follow_up_due'"
DEFAULT_REASONS = ("Price too high", "Chose a competitor", "No budget", "Went silent", "Bad timing",
                   "Not a fit")


def upgrade() -> None:
    op.add_column("follow_ups", sa.Column("kind", sa.String(16), nullable=True))
    op.create_check_constraint("ck_follow_ups_kind", "follow_ups", "kind IS NULL OR kind IN ('call', 'email', 'meeting')")
    op.create_index("ix_follow_ups_open_due", "follow_ups", ["due_at"], postgresql_where=sa.text("done_at IS NULL"))

    _lost_reasons()
    _notifications()


def _lost_reasons() -> None:
    op.add_column("leads", sa.Column("lost_reason", sa.String(120), nullable=True))
    op.add_column("leads", sa.Column("lost_note", sa.String(500), nullable=True))
    # A deal that leaves Lost forgets why it was lost, whichever writer moves it (a page, a bulk
    # move, an edit, the REST API, an import): kept here in one place, like hot_since (0017).
    op.execute(
        """
        CREATE FUNCTION crm_forget_lost_reason() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.stage <> 'lost' THEN
            NEW.lost_reason := NULL;
            NEW.lost_note := NULL;
          END IF;
          RETURN NEW;
        END $$
        """
    )
    op.execute("CREATE TRIGGER leads_forget_lost_reason BEFORE INSERT OR UPDATE OF stage, lost_reason, lost_note "
               "ON leads FOR EACH ROW EXECUTE FUNCTION crm_forget_lost_reason()")
    op.create_index("ix_leads_lost_reason", "leads", ["lost_reason"], postgresql_where=sa.text("stage = 'lost'"))
    op.create_table(
        "lost_reasons",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("label", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.CheckConstraint("length(btrim(label)) > 0", name="ck_lost_reasons_label"),
    )
    op.create_index("uq_lost_reasons_label", "lost_reasons", [sa.text("lower(label)")], unique=True)
    op.bulk_insert(sa.table("lost_reasons", sa.column("label", sa.String), sa.column("position", sa.Integer)),
                   [{"label": label, "position": i} for i, label in enumerate(DEFAULT_REASONS)])
    op.execute("ALTER TABLE lost_reasons ENABLE ROW LEVEL SECURITY")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON lost_reasons TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE lost_reasons_id_seq TO {APP_ROLE}")
    # Everyone signed in reads the list (the Lost dialog); managers change it.
    op.execute(f"CREATE POLICY lost_reasons_read ON lost_reasons FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_acting_user()) IS NOT NULL)")
    for command, clause in (("INSERT", "WITH CHECK"), ("UPDATE", "USING"), ("DELETE", "USING")):
        op.execute(f"CREATE POLICY lost_reasons_{command.lower()} ON lost_reasons FOR {command} TO {APP_ROLE} "
                   f"{clause} ((SELECT crm_sees_team()))")


def _notifications() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=True),
        sa.Column("follow_up_id", sa.Integer(), sa.ForeignKey("follow_ups.id", ondelete="CASCADE"), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message", sa.String(300), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("read_at", TS, nullable=True),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="ck_notifications_kind"),
    )
    # The bell: a user's newest, and their unread count.
    op.create_index("ix_notifications_user_created", "notifications", ["user_id", sa.text("created_at DESC")])
    op.create_index("ix_notifications_user_unread", "notifications", ["user_id"],
                    postgresql_where=sa.text("read_at IS NULL"))
    # A follow-up falls due once: the sweep may run on several workers and again after a restart.
    op.create_index("uq_notifications_follow_up", "notifications", ["follow_up_id"], unique=True,
                    postgresql_where=sa.text("kind = 'follow_up_due'"))
    op.execute("ALTER TABLE notifications ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON notifications FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON notifications TO {APP_ROLE}")
    op.execute(f"GRANT UPDATE (read_at) ON notifications TO {APP_ROLE}")
    own = "user_id = (SELECT crm_acting_user())"
    op.execute(f"CREATE POLICY notifications_own_read ON notifications FOR SELECT TO {APP_ROLE} USING ({own})")
    op.execute(f"CREATE POLICY notifications_own_mark ON notifications FOR UPDATE TO {APP_ROLE} "
               f"USING ({own}) WITH CHECK ({own})")

    # Inserts one notification and tells the user's open pages at commit. SECURITY DEFINER: the app
    # role may not insert notifications itself (it could address them to anyone).
    op.execute(
        f"""
        CREATE FUNCTION crm_notify_user(target integer, lead integer, what text, words text)
          RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $$
        BEGIN
          INSERT INTO public.notifications (user_id, lead_id, kind, message) VALUES (target, lead, what, left(words, 300));
          PERFORM pg_notify('crm_leads', 'n' || target::text);
        END $$
        """
    )
    op.execute(f"REVOKE ALL ON FUNCTION crm_notify_user(integer, integer, text, text) FROM PUBLIC")
    op.execute(
        f"""
        CREATE FUNCTION crm_notify_request() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $$
        DECLARE
          lead record;
        BEGIN
          IF NEW.kind IN ('pricing_request', 'demo_request') AND NEW.occurred_at > now() - interval '1 day' THEN
            SELECT l.owner_id, l.name, l.company INTO lead FROM public.leads l WHERE l.id = NEW.lead_id;
            -- Not news to the owner who logged it themself (a request heard on a call).
            IF lead.owner_id IS NOT NULL AND NEW.user_id IS DISTINCT FROM lead.owner_id THEN
              PERFORM public.crm_notify_user(lead.owner_id, NEW.lead_id, NEW.kind,
                lead.name || coalesce(' (' || nullif(lead.company, '') || ')', '')
                || CASE NEW.kind WHEN 'pricing_request' THEN ' asked for pricing' ELSE ' asked for a demo' END);
            END IF;
          END IF;
          RETURN NULL;
        END $$
        """
    )
    op.execute("CREATE TRIGGER activities_notify_request AFTER INSERT ON activities "
               "FOR EACH ROW EXECUTE FUNCTION crm_notify_request()")
    op.execute(
        f"""
        CREATE FUNCTION crm_notify_lead_news() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $$
        DECLARE
          who text := NEW.name || coalesce(' (' || nullif(NEW.company, '') || ')', '');
          manager record;
        BEGIN
          IF NEW.tier = 'hot' AND OLD.tier <> 'hot' AND NEW.owner_id IS NOT NULL
             AND NEW.last_activity_at > now() - interval '1 day' THEN
            PERFORM public.crm_notify_user(NEW.owner_id, NEW.id, 'hot', who || ' turned Hot (score ' || NEW.score || ')');
          END IF;
          IF NEW.owner_id IS NOT NULL AND NEW.owner_id IS DISTINCT FROM OLD.owner_id
             AND NEW.owner_id IS DISTINCT FROM public.crm_acting_user() THEN
            PERFORM public.crm_notify_user(NEW.owner_id, NEW.id, 'assigned', who || ' was assigned to you');
          END IF;
          IF NEW.risk_level = 'high' AND OLD.risk_level IS DISTINCT FROM 'high' AND NEW.owner_id IS NOT NULL
             AND NEW.stage NOT IN ('won', 'lost') THEN
            FOR manager IN SELECT u.id FROM public.users u
                            WHERE u.role IN ('manager', 'admin') AND u.is_active AND u.id <> NEW.owner_id LOOP
              PERFORM public.crm_notify_user(manager.id, NEW.id, 'at_risk', who || ' went At risk');
            END LOOP;
          END IF;
          RETURN NULL;
        END $$
        """
    )
    op.execute("CREATE TRIGGER leads_notify_news AFTER UPDATE OF tier, owner_id, risk_level ON leads "
               "FOR EACH ROW EXECUTE FUNCTION crm_notify_lead_news()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS leads_notify_news ON leads")
    op.execute("DROP TRIGGER IF EXISTS activities_notify_request ON activities")
    op.execute("DROP FUNCTION IF EXISTS crm_notify_lead_news()")
    op.execute("DROP FUNCTION IF EXISTS crm_notify_request()")
    op.execute("DROP FUNCTION IF EXISTS crm_notify_user(integer, integer, text, text)")
    op.drop_table("notifications")
    op.drop_table("lost_reasons")
    op.drop_index("ix_leads_lost_reason", table_name="leads")
    op.execute("DROP TRIGGER IF EXISTS leads_forget_lost_reason ON leads")
    op.execute("DROP FUNCTION IF EXISTS crm_forget_lost_reason()")
    op.drop_column("leads", "lost_note")
    op.drop_column("leads", "lost_reason")
    op.drop_index("ix_follow_ups_open_due", table_name="follow_ups")
    op.drop_constraint("ck_follow_ups_kind", "follow_ups")
    op.drop_column("follow_ups", "kind")
