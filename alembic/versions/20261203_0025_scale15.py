"""the lead's owner on its activities and stage changes, so their policies compare a column, not a join

Row-level security checked every activity and stage change a rep reads against its lead
(`EXISTS (SELECT 1 FROM leads ...)`, itself under the leads policy): a rep's analytics paid about 2x
for it, and it grows with the history. Each row now carries `owner_id`, its lead's owner, and the
policies compare that column the way the leads policy compares the lead's:

- a row's owner is always its lead's: a trigger sets it on every insert and update of an activity or
  stage change from the lead (whatever the writer sent, so nobody can forge it), and a trigger on
  `leads` rewrites it on the lead's rows in the same statement that changes the lead's owner (a
  reassignment, a claim, a user's deletion setting owners to NULL), so it is right at every commit;
- both triggers run as the tables' owner (SECURITY DEFINER, fixed search_path): a rep who may
  reassign a lead must not need the right to write its history, and the insert trigger must see the
  lead's true owner even when the writer may not (then the policy refuses the row, as before).

Indexes by owner and time serve a rep's reads of their own history (analytics, the timeline).

Revision ID: 0025_scale15
Revises: 0024_ux14
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0025_scale15"
down_revision: Union[str, None] = "0024_ux14"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
CHILDREN = {"activities": "occurred_at", "stage_changes": "changed_at"}
FIXED_PATH = "pg_catalog, public, pg_temp"

# Exactly the leads policy (migration 0014) over the row's own copy of the owner.
CHILD_VISIBLE = ("(SELECT crm_sees_team()) OR ((SELECT crm_acting_user()) IS NOT NULL "
                 "AND (owner_id IS NULL OR owner_id = (SELECT crm_acting_user())))")
OLD_CHILD_VISIBLE = "(SELECT crm_sees_team()) OR EXISTS (SELECT 1 FROM leads l WHERE l.id = lead_id)"


def _policy(table: str, rule: str) -> None:
    op.execute(f"DROP POLICY {table}_visible ON {table}")
    op.execute(f"CREATE POLICY {table}_visible ON {table} TO {APP_ROLE} USING ({rule}) WITH CHECK ({rule})")


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION crm_owner_from_lead() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        BEGIN
          NEW.owner_id := (SELECT l.owner_id FROM public.leads l WHERE l.id = NEW.lead_id);
          RETURN NEW;
        END $fn$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION crm_owner_to_history() RETURNS trigger
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        BEGIN
          UPDATE public.activities SET owner_id = NEW.owner_id
           WHERE lead_id = NEW.id AND owner_id IS DISTINCT FROM NEW.owner_id;
          UPDATE public.stage_changes SET owner_id = NEW.owner_id
           WHERE lead_id = NEW.id AND owner_id IS DISTINCT FROM NEW.owner_id;
          RETURN NULL;
        END $fn$
        """
    )
    for function in ("crm_owner_from_lead()", "crm_owner_to_history()"):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    for table, moment in CHILDREN.items():
        op.execute(f"ALTER TABLE {table} ADD COLUMN owner_id integer")
        op.execute(f"UPDATE {table} t SET owner_id = l.owner_id FROM leads l "
                   f"WHERE l.id = t.lead_id AND l.owner_id IS NOT NULL")
        op.execute(f"CREATE INDEX ix_{table}_owner_{moment} ON {table} (owner_id, {moment})")
        op.execute(f"CREATE TRIGGER {table}_owner_from_lead BEFORE INSERT OR UPDATE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION crm_owner_from_lead()")
        _policy(table, CHILD_VISIBLE)
    op.execute("CREATE TRIGGER leads_owner_to_history AFTER UPDATE OF owner_id ON leads FOR EACH ROW "
               "WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id) EXECUTE FUNCTION crm_owner_to_history()")


def downgrade() -> None:
    op.execute("DROP TRIGGER leads_owner_to_history ON leads")
    for table, moment in CHILDREN.items():
        _policy(table, OLD_CHILD_VISIBLE)
        op.execute(f"DROP TRIGGER {table}_owner_from_lead ON {table}")
        op.execute(f"DROP INDEX ix_{table}_owner_{moment}")
        op.execute(f"ALTER TABLE {table} DROP COLUMN owner_id")
    op.execute("DROP FUNCTION crm_owner_to_history()")
    op.execute("DROP FUNCTION crm_owner_from_lead()")
