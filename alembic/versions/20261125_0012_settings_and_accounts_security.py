"""settings and accounts security: team settings, user accounts and API keys under the app role

Migrations 0009 and 0011 protect the lead data for the app role `crm_app_user`; this one closes what
a review found still open to raw SQL under that role (issue #6):

- `users`: every acting user may read the team (names on cards and lists; crm_sees_team() reads it),
  nobody without an acting user. Only an active admin may add (INSERT) or change (UPDATE) accounts:
  the Users page (create_user, set_role, set_active) runs as the admin. Nobody deletes under the app
  role (the privilege is revoked). A user changes their OWN password through
  `crm_set_own_password(hash, at)`, a SECURITY DEFINER function that updates only the acting user's
  row and only those two columns (services/accounts.change_password calls it when acting): column
  privileges would not do, since they belong to the role that every user shares, not to the user.
  The last-admin rules stay in the services (set_role, set_active), which run as an admin here.
- Team settings and scoring state (`source_costs`, `stage_rules`, `scoring_settings`,
  `scoring_models`, `scoring_jobs`, `play_stats`): every acting user reads them (scoring a lead,
  the next best action, pipeline health); only managers and admins (crm_sees_team) write them. No
  rep action writes them: the model page's switches and jobs are for managers, and the training
  and rescoring workers and the play-stats sweep run as the tables' owner.
- `api_keys`: admins only (the API keys page lists, creates and revokes as the admin); no DELETE
  (a key is revoked, not deleted). The REST API authenticates and counts requests as the owner.
- `api_idempotency`: the REST API claims, completes and releases an idempotency key as the key's
  user, inside the request's own transaction; the app role may touch only rows of keys acting as
  the acting user, checked by `crm_key_acts_as_me(key id)` (SECURITY DEFINER, as api_keys is
  admin-only).
- `api_rate_windows`: nothing for the app role (the owner counts requests; the sweep purges).

The tables' owner (migrations, sign-in, the first admin, the command line, background work) is still
not subject to the policies (no FORCE).

Revision ID: 0012_settings_accounts_security
Revises: 0011_more_row_security
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0012_settings_accounts_security"
down_revision: Union[str, None] = "0011_more_row_security"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
TEAM_SETTINGS = ("source_costs", "stage_rules", "scoring_settings", "scoring_models", "scoring_jobs", "play_stats")


def upgrade() -> None:
    _users()
    _team_settings()
    _api()


def _users() -> None:
    op.execute(
        """
        CREATE FUNCTION crm_is_admin() RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT EXISTS (SELECT 1 FROM users WHERE id = crm_acting_user() AND is_active AND role = 'admin')
        $$
        """
    )
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    # No policy here may read `users` through a function of its own command: crm_is_admin() and
    # crm_sees_team() query users, which applies only users_read (no recursion).
    op.execute(f"CREATE POLICY users_read ON users FOR SELECT TO {APP_ROLE} USING (crm_acting_user() IS NOT NULL)")
    op.execute(f"CREATE POLICY users_admin_insert ON users FOR INSERT TO {APP_ROLE} WITH CHECK (crm_is_admin())")
    # Evaluated against the statement's snapshot: an admin may demote themself (set_role allows it
    # when another admin remains).
    op.execute(
        f"CREATE POLICY users_admin_update ON users FOR UPDATE TO {APP_ROLE} "
        "USING (crm_is_admin()) WITH CHECK (crm_is_admin())"
    )
    # UPDATE stays granted (policies limit it; set_role's LOCK TABLE needs it); DELETE goes.
    op.execute(f"REVOKE DELETE, TRUNCATE ON users FROM {APP_ROLE}")
    op.execute(
        """
        CREATE FUNCTION crm_set_own_password(new_hash text, changed_at timestamptz) RETURNS boolean
          LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
        BEGIN
          IF new_hash IS NULL OR left(new_hash, 8) <> '$argon2i' THEN
            RAISE EXCEPTION 'not a password hash' USING ERRCODE = 'invalid_parameter_value';
          END IF;
          UPDATE public.users SET password_hash = new_hash, password_changed_at = changed_at
           WHERE id = public.crm_acting_user() AND is_active;
          RETURN FOUND;
        END
        $fn$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_set_own_password(text, timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_set_own_password(text, timestamptz) TO {APP_ROLE}")


def _team_settings() -> None:
    for table in TEAM_SETTINGS:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_read ON {table} FOR SELECT TO {APP_ROLE} USING (crm_acting_user() IS NOT NULL)")
        for command in ("INSERT", "UPDATE", "DELETE"):
            check = "WITH CHECK (crm_sees_team())" if command == "INSERT" else "USING (crm_sees_team())"
            if command == "UPDATE":
                check += " WITH CHECK (crm_sees_team())"
            op.execute(f"CREATE POLICY {table}_team_{command.lower()} ON {table} FOR {command} TO {APP_ROLE} {check}")


def _api() -> None:
    op.execute("ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY")
    for command in ("SELECT", "INSERT", "UPDATE"):
        check = {"SELECT": "USING (crm_is_admin())", "INSERT": "WITH CHECK (crm_is_admin())",
                 "UPDATE": "USING (crm_is_admin()) WITH CHECK (crm_is_admin())"}[command]
        op.execute(f"CREATE POLICY api_keys_admin_{command.lower()} ON api_keys FOR {command} TO {APP_ROLE} {check}")
    op.execute(f"REVOKE DELETE, TRUNCATE ON api_keys FROM {APP_ROLE}")

    op.execute(
        """
        CREATE FUNCTION crm_key_acts_as_me(key_id integer) RETURNS boolean
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
          SELECT EXISTS (SELECT 1 FROM public.api_keys k
                          WHERE k.id = key_id AND k.user_id = public.crm_acting_user())
        $fn$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_key_acts_as_me(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_key_acts_as_me(integer) TO {APP_ROLE}")
    op.execute("ALTER TABLE api_idempotency ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"""
        CREATE POLICY api_idempotency_own_keys ON api_idempotency TO {APP_ROLE}
          USING (crm_key_acts_as_me(api_key_id)) WITH CHECK (crm_key_acts_as_me(api_key_id))
        """
    )

    op.execute("ALTER TABLE api_rate_windows ENABLE ROW LEVEL SECURITY")  # and no policy: no row
    op.execute(f"REVOKE ALL ON api_rate_windows FROM {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON api_rate_windows TO {APP_ROLE}")
    op.execute("ALTER TABLE api_rate_windows DISABLE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS api_idempotency_own_keys ON api_idempotency")
    op.execute("ALTER TABLE api_idempotency DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS crm_key_acts_as_me(integer)")
    op.execute(f"GRANT DELETE ON api_keys TO {APP_ROLE}")
    for command in ("select", "insert", "update"):
        op.execute(f"DROP POLICY IF EXISTS api_keys_admin_{command} ON api_keys")
    op.execute("ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY")

    for table in TEAM_SETTINGS:
        for command in ("insert", "update", "delete"):
            op.execute(f"DROP POLICY IF EXISTS {table}_team_{command} ON {table}")
        op.execute(f"DROP POLICY IF EXISTS {table}_read ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

    op.execute("DROP FUNCTION IF EXISTS crm_set_own_password(text, timestamptz)")
    op.execute(f"GRANT DELETE ON users TO {APP_ROLE}")
    for name in ("users_admin_update", "users_admin_insert", "users_read"):
        op.execute(f"DROP POLICY IF EXISTS {name} ON users")
    op.execute("ALTER TABLE users DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS crm_is_admin()")
