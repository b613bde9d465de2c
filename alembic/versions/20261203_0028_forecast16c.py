"""forecast16c: the team's closing history also says how old each deal was when it entered a stage

`crm_forecast_history(cutoff)` (0022) returns one more column, `entered`: whole days from the deal's
creation to its entering the stage (0 for the 'created' basis; NULL for leads imported without dates).
The forecast compares an open deal with the deals that were in the same stage at least as long *and*
at least as old (crm_app/forecasting/timing.py): a deal that took four months to reach Negotiation is
not one moving at the usual pace. Still counts per day, never a lead, an owner or a value. A function
with a different result type cannot be replaced in place, so it is dropped and created again (with
the same grants); nothing else depends on it.

Revision ID: 0028_forecast16c
Revises: 0027_import20
Create Date: 2026-12-03
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0028_forecast16c"
down_revision: Union[str, None] = "0027_import20"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
OPEN_STAGES = "('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation')"


def _create(with_entered: bool) -> None:
    entered_type = ", entered integer" if with_entered else ""
    entered_visit = (",\n                       "
                     "floor(extract(epoch FROM c.changed_at - k.created_at) / 86400)::integer AS entered"
                     ) if with_entered else ""
    entered_created = ", 0" if with_entered else ""
    entered_out = ", CASE WHEN v.dates_known THEN greatest(v.entered, 0) END" if with_entered else ""
    group = "1, 2, 3, 4, 5" if with_entered else "1, 2, 3, 4"
    # One aggregate over every stage change: JIT compiling it costs more than it saves, and its hash
    # aggregate (a row per stage, days and age) spilled to disk at 100,000 leads with the default 4MB.
    settings = " SET jit = off SET work_mem = '32MB'" if with_entered else ""

    op.execute(
        f"""
        CREATE FUNCTION crm_forecast_history(cutoff timestamptz)
          RETURNS TABLE (basis text, stay integer, days integer{entered_type}, outcome text, deals bigint)
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp{settings} AS $$
            WITH known AS (
                SELECT l.id, l.created_at, l.dates_known,
                       CASE WHEN l.closed_at < cutoff AND l.stage IN ('won', 'lost') THEN l.stage
                            ELSE 'open' END AS outcome,
                       CASE WHEN l.closed_at < cutoff AND l.stage IN ('won', 'lost') THEN l.closed_at
                            ELSE cutoff END AS until
                  FROM leads l
                 WHERE l.created_at < cutoff
            ), changes AS (
                SELECT sc.lead_id, sc.to_stage, sc.changed_at,
                       lead(sc.changed_at) OVER (PARTITION BY sc.lead_id
                                                 ORDER BY sc.changed_at, sc.id) AS left_at
                  FROM stage_changes sc
                 WHERE sc.changed_at < cutoff
            ), visits AS (
                SELECT c.to_stage::text AS basis, k.outcome, k.dates_known,
                       floor(extract(epoch FROM least(coalesce(c.left_at, k.until), k.until) - c.changed_at)
                             / 86400)::integer AS stay,
                       floor(extract(epoch FROM k.until - c.changed_at) / 86400)::integer
                         AS days{entered_visit}
                  FROM known k JOIN changes c ON c.lead_id = k.id
                 WHERE c.changed_at <= k.until AND c.to_stage IN {OPEN_STAGES}
                UNION ALL
                SELECT 'created', k.outcome, k.dates_known,
                       floor(extract(epoch FROM k.until - k.created_at) / 86400)::integer,
                       floor(extract(epoch FROM k.until - k.created_at) / 86400)::integer{entered_created}
                  FROM known k
            )
            SELECT v.basis, CASE WHEN v.dates_known THEN greatest(v.stay, 0) END,
                   CASE WHEN v.dates_known THEN greatest(v.days, 0) END{entered_out}, v.outcome, count(*)
              FROM visits v
             GROUP BY {group}
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_forecast_history(timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_forecast_history(timestamptz) TO {APP_ROLE}")


def upgrade() -> None:
    op.execute("DROP FUNCTION crm_forecast_history(timestamptz)")
    _create(with_entered=True)


def downgrade() -> None:
    op.execute("DROP FUNCTION crm_forecast_history(timestamptz)")
    _create(with_entered=False)
