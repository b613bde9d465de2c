"""least-privilege login: the web app's own role, a proven acting user, no hash reads, no lead deletes

Before, the app connected as the tables' owner (often a superuser) and switched to `crm_app_user`
with `SET LOCAL ROLE` and a plain setting `crm.user_id`: SQL that ever slipped into a query could
`RESET ROLE` back to the owner or `set_config('crm.user_id', ...)` to any user (issue #17, item 5).

- Role `crm_web` (LOGIN, NOINHERIT, not a superuser, creates nothing, owns nothing): the web app's
  login for everything a signed-in user does. Its only privilege is becoming `crm_app_user`; RESET
  ROLE leaves it with no rights at all, and it is no member of the owner. Created here when the
  migrating role may create roles (the embedded server, a superuser); otherwise by the DBA (README).
  A superuser creating it also sets `track_activities = off` for it: pg_stat_activity shows a role's
  statements to every session of that role, so one web connection could read the others' (values
  included); a setting only a superuser may change back.
  Like `crm_app_user` it is cluster-wide, shared by every database of the server; downgrade keeps it.
- The acting user is proven, not claimed: `crm_acting_user()`, which every policy and lookup asks,
  becomes SECURITY DEFINER and answers the id in `crm.user_id` only when `crm.acting_proof` is
  sha256(key || sha256(key || id ':' challenge)), where the challenge (`crm_acting_challenge()`) is the
  backend's pid and this transaction's start in microseconds, and the key (32 bytes, 244 of them
  random, from gen_random_uuid's strong source) is in `crm_private.acting_key`, a schema nobody but
  the owner may even look into. A proof seen in pg_stat_activity or read with current_setting is good
  for that one transaction only. The app reads the key through the owner's login and computes the
  proof (crm_app/db/security.py). Nothing is written per transaction (a table of acting users keyed
  by pid and transaction id would give every read-only page an xid and a commit record).
- The policies' helpers crm_sees_team() and crm_is_admin() read `public.users` by its full name:
  they run with the caller's search_path, and a temporary table named `users` put first on it
  (`SET search_path = pg_temp, public`) made any rep a manager.
- `crm_lead_ids_matching` and `crm_lead_ids_by_email` (migration 0013) return nothing when nobody
  acts, unless the session's login is exempt from row-level security on leads anyway (the tables'
  owner or a superuser: the command line, sweeps, tests), instead of every match to anyone.
- `users.password_hash`: the app role may not read it (column privileges: every other column stays
  readable; a new column must be granted here too). Password checks (sign-in, password changes)
  run as the tables' owner with fixed queries for the user of a checked session, because argon2 is
  verified in Python. `has_password` (generated) answers "can this account sign in" for the Users
  page. The app role no longer writes a hash either, except in a new account an admin adds: a
  trigger refuses an UPDATE of the column under it, and `crm_set_own_password` (0012), no longer
  used, is dropped.
- No DELETE on leads, activities or stage_changes for the app role: no page, API call or import
  deletes them, whatever the role (the command line's reset runs as the owner).

Revision ID: 0016_least_privilege_login
Revises: 0015_sessions_security
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0016_least_privilege_login"
down_revision: Union[str, None] = "0015_sessions_security"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
WEB_ROLE = "crm_web"
READABLE_USER_COLUMNS = "id, email, name, role, is_active, created_at, password_changed_at, has_password"
NO_DELETE = ("leads", "activities", "stage_changes")
FIXED_PATH = "pg_catalog, public, pg_temp"

# Who may match: the acting user by the leads policy's rule; with nobody acting, only a login that
# row-level security does not apply to anyway (the tables' owner, a superuser), never the app's login.
VISIBLE = (
    "CASE WHEN (SELECT crm_acting_user()) IS NULL THEN (SELECT crm_session_bypasses_rls()) "
    "ELSE owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) OR (SELECT crm_sees_team()) END"
)
OLD_VISIBLE = ("((SELECT crm_acting_user()) IS NULL OR owner_id IS NULL OR owner_id = (SELECT crm_acting_user()) "
               "OR (SELECT crm_sees_team()))")


def upgrade() -> None:
    _web_role()
    _proven_acting_user()
    _users_read_from_public("public.")
    _lookups(VISIBLE)
    _password_hashes()
    for table in NO_DELETE:
        op.execute(f"REVOKE DELETE, TRUNCATE ON {table} FROM {APP_ROLE}")


def _web_role() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WEB_ROLE}')
             AND (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            BEGIN
              CREATE ROLE {WEB_ROLE} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;
              IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                -- Each web connection's statements (with other users' values in them) would otherwise
                -- be readable by every other one in pg_stat_activity; only a superuser may set this.
                ALTER ROLE {WEB_ROLE} SET track_activities = off;
              END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration won
            END;
          END IF;
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WEB_ROLE}')
             AND NOT pg_has_role('{WEB_ROLE}', '{APP_ROLE}', 'MEMBER') THEN
            BEGIN
              GRANT {APP_ROLE} TO {WEB_ROLE};
            EXCEPTION WHEN unique_violation THEN NULL;
            END;
          END IF;
        END $$
        """
    )


def _proven_acting_user() -> None:
    op.execute("CREATE SCHEMA crm_private")
    op.execute("REVOKE ALL ON SCHEMA crm_private FROM PUBLIC")
    op.execute(
        """
        CREATE TABLE crm_private.acting_key (
          only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
          key bytea NOT NULL CHECK (length(key) >= 32)
        )
        """
    )
    op.execute("REVOKE ALL ON crm_private.acting_key FROM PUBLIC")
    # Two version-4 UUIDs from PostgreSQL's strong random source: 244 random bits, and plain SQL (so
    # `alembic upgrade --sql` works too).
    op.execute("INSERT INTO crm_private.acting_key (key) "
               "VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))")
    # Only pg_catalog functions: safe under any search_path, and inlined where it is called.
    op.execute(
        """
        CREATE FUNCTION crm_acting_challenge() RETURNS text LANGUAGE sql STABLE AS $$
          SELECT pg_catalog.pg_backend_pid()::text || ':'
                 || (extract(epoch FROM pg_catalog.transaction_timestamp()) * 1000000)::bigint::text
        $$
        """
    )
    # PL/pgSQL, not SQL: its statements' plans are cached per connection, and the policies call this
    # a few times per query (measured: 14 us a call, against 67 us for the same in LANGUAGE sql).
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_acting_user() RETURNS integer
          LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {FIXED_PATH} AS $fn$
        DECLARE
          claimed text := current_setting('crm.user_id', true);
          proof text := current_setting('crm.acting_proof', true);
          secret bytea;
        BEGIN
          IF claimed IS NULL OR proof IS NULL OR claimed !~ '^[0-9]{{1,9}}$' THEN
            RETURN NULL;
          END IF;
          SELECT k.key INTO secret FROM crm_private.acting_key k;
          IF proof = encode(sha256(secret || sha256(secret || convert_to(
               claimed || ':' || public.crm_acting_challenge(), 'UTF8'))), 'hex') THEN
            RETURN claimed::integer;
          END IF;
          RETURN NULL;
        END
        $fn$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION crm_session_bypasses_rls() RETURNS boolean
          LANGUAGE sql STABLE SET search_path = {FIXED_PATH} AS $$
          SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(session_user, c.relowner, 'USAGE')
            FROM pg_roles r, pg_class c
           WHERE r.rolname = session_user AND c.oid = 'public.leads'::regclass
        $$
        """
    )


def _users_read_from_public(schema: str) -> None:
    """The policies' helpers name `public.users`: a caller's temporary `users` table cannot stand in for
    it. No SET search_path, so they are still inlined into the policies' once-per-query subplans."""
    table = f"{schema}users"
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_sees_team() RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT EXISTS (SELECT 1 FROM {table}
                          WHERE id = crm_acting_user() AND is_active AND role IN ('manager', 'admin'))
        $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_is_admin() RETURNS boolean LANGUAGE sql STABLE AS $$
          SELECT EXISTS (SELECT 1 FROM {table} WHERE id = crm_acting_user() AND is_active AND role = 'admin')
        $$
        """
    )


def _lookups(visible: str) -> None:
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_lead_ids_matching(pattern text) RETURNS SETOF integer
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 500 AS $$
            SELECT id FROM leads
             WHERE (name ILIKE pattern OR company ILIKE pattern OR email ILIKE pattern) AND {visible}
        $$
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION crm_lead_ids_by_email(lower_emails text[]) RETURNS SETOF integer
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp ROWS 10 AS $$
            SELECT id FROM leads WHERE lower(email) = ANY(lower_emails) AND {visible}
        $$
        """
    )


def _password_hashes() -> None:
    op.execute("ALTER TABLE users ADD COLUMN has_password boolean GENERATED ALWAYS AS (password_hash IS NOT NULL) STORED")
    op.execute(f"REVOKE SELECT ON users FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ({READABLE_USER_COLUMNS}) ON users TO {APP_ROLE}")
    op.execute(
        f"""
        CREATE FUNCTION crm_password_hash_unchanged() RETURNS trigger
          LANGUAGE plpgsql SET search_path = {FIXED_PATH} AS $fn$
        BEGIN
          IF current_user = '{APP_ROLE}' THEN
            RAISE EXCEPTION 'permission denied: a password hash changes only through a password change'
              USING ERRCODE = 'insufficient_privilege';
          END IF;
          RETURN NEW;
        END
        $fn$
        """
    )
    op.execute(
        "CREATE TRIGGER users_password_hash_unchanged BEFORE UPDATE OF password_hash ON users FOR EACH ROW "
        "WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash) EXECUTE FUNCTION crm_password_hash_unchanged()"
    )
    op.execute("DROP FUNCTION crm_set_own_password(text, timestamptz)")


def downgrade() -> None:
    for table in NO_DELETE:
        op.execute(f"GRANT DELETE ON {table} TO {APP_ROLE}")

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
    op.execute("DROP TRIGGER IF EXISTS users_password_hash_unchanged ON users")
    op.execute("DROP FUNCTION IF EXISTS crm_password_hash_unchanged()")
    op.execute(f"REVOKE SELECT ({READABLE_USER_COLUMNS}) ON users FROM {APP_ROLE}")
    op.execute("ALTER TABLE users DROP COLUMN has_password")
    op.execute(f"GRANT SELECT ON users TO {APP_ROLE}")

    _lookups(OLD_VISIBLE)
    op.execute("DROP FUNCTION IF EXISTS crm_session_bypasses_rls()")
    _users_read_from_public("")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION crm_acting_user() RETURNS integer LANGUAGE sql STABLE AS $$
          SELECT nullif(current_setting('crm.user_id', true), '')::integer
        $$
        """
    )
    op.execute("DROP FUNCTION IF EXISTS crm_acting_challenge()")
    op.execute("DROP SCHEMA crm_private CASCADE")
