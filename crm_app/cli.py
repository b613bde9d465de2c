"""Command line: `python -m crm_app.cli <command>`.

    migrate            bring the database to the newest schema
    seed [--leads N]   fill an empty database with the demo team (deterministic) and train a model on
                       its history that then scores the leads (--no-model: keep the rules)
    setup              migrate, check the web app's own database login, then seed if there are no
                       leads yet (used by scripts/start.sh)
    rescore            rescore every lead with the team's engine and reassess its deal risk
    sweep              rescore only the leads whose recency bonus has run out, and reassess the
                       risk of the deals that time has changed
    import FILE --mapping M.json [--dry-run]
                       import a CSV of leads (all rows or none; re-import updates, never duplicates)
    train [--keep-field NAME ...]
                       train a scoring model on the closed leads and store it (inactive); custom
                       fields that alone predict the outcome or are ids are left out unless kept
    evaluate [--version N | --folds 5]
                       print a stored model's figures next to the rules' (default: newest),
                       or cross-validate the training recipe on random folds of the closed leads
    activate --version N
                       make a stored model the active one (its open leads and history rescored)
    engine rules|model|blend [--weight P]
                       choose what scores the leads (P: the model's share of a blend, in percent)
                       and rescore the open leads and the closed deals a model learned from
    mine-plays         recompute the play statistics behind the next best action
    create-admin       create the first admin (asks for the password) when none can sign in yet
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.engine import database_url, get_engine
from crm_app.db.migrate import upgrade_to_head
from crm_app.db.models import utcnow


def _lead_count() -> int:
    with get_engine().connect() as conn:
        return conn.execute(text("SELECT count(*) FROM leads")).scalar_one()


def _reassess_expired_risk(session: Session) -> int:
    from crm_app.services.risk import reassess_expired_risk

    return reassess_expired_risk(session, utcnow())


def migrate(_: argparse.Namespace) -> None:
    upgrade_to_head(database_url())
    print("Database is at the newest schema.")


def seed(args: argparse.Namespace) -> None:
    from crm_app.demo.generator import generate_demo_data, reset_demo_data

    if args.reset:
        reset_demo_data(get_engine())
    summary = generate_demo_data(get_engine(), leads=args.leads, seed=args.seed, now=utcnow(), progress=print)
    print(f"Demo data: {summary.users} users, {summary.leads:,} leads, {summary.activities:,} activities, "
          f"{summary.stage_changes:,} stage changes in {summary.elapsed_seconds:.1f} s.")
    mine_plays(args)
    if not args.no_model:
        demo_model()


def demo_model(*, choose_model: bool = True) -> None:
    """Train a model on the demo history and let it score, so the model page shows one out of the box.
    When training fails (too little history) the rules keep scoring, and the reason is printed.
    `choose_model=False` keeps the team's engine choice (model or blend) as it is."""
    from crm_app.services.errors import ServiceError
    from crm_app.services.model_training import activate_model, train_model
    from crm_app.services.scoring import rescore_history, rescore_open_leads
    from crm_app.services.scoring_settings import set_engine_choice

    with Session(get_engine()) as session:
        try:
            report = train_model(session, now=utcnow(), progress=lambda message: print(f"  {message}"))
        except ServiceError as error:
            print(f"No demo model: {error}")
            return
        # actor=None: the command line works as the tables' owner, for the whole team.
        activate_model(session, report.model_id, actor=None)
        if choose_model:
            set_engine_choice(session, mode="model", now=utcnow(), actor=None)
        count = rescore_open_leads(session, utcnow())
        history = rescore_history(session, utcnow())
    auc = report.model.roc_auc
    print(f"Demo model v{report.version} (holdout ROC-AUC {auc:.3f} vs the rules' {report.rules.roc_auc:.3f}) "
          f"now scores the {count:,} open leads; {history:,} closed deals show out-of-fold scores.")


def _check_web_login() -> None:
    """Stop before the app starts when its own database login is missing or could do too much."""
    from crm_app.db.engine import UnsafeLogin, get_app_engine

    try:
        get_app_engine()
    except UnsafeLogin as error:
        sys.exit(str(error))
    print("The web app's database login can only act as the signed-in user.")


def retrain_outdated_model() -> None:
    """An active model stored by an earlier version of the app cannot score any more (the rules do
    meanwhile): train a new one on the same history, let it score and rescore the open leads, so an
    upgrade keeps the team's engine choice and no lead keeps reasons the old engine gave."""
    from crm_app.scoring.model import FORMAT_MAGIC

    with Session(get_engine()) as session:
        blob = session.execute(text("SELECT model FROM scoring_models WHERE is_active")).scalar()
    if blob is None or bytes(blob).startswith(FORMAT_MAGIC):
        return
    print("The active scoring model was trained by an earlier version of the app: training a new one.")
    demo_model(choose_model=False)


def setup(args: argparse.Namespace) -> None:
    migrate(args)
    _check_web_login()
    count = _lead_count()
    if count:
        print(f"{count:,} leads already stored; demo data left alone.")
        with Session(get_engine()) as session:
            from crm_app.services.scoring import rescore_expired

            print(f"Rescored {rescore_expired(session, utcnow()):,} leads whose recency bonus ran out.")
            print(f"Reassessed the risk of {_reassess_expired_risk(session):,} deals that time has changed.")
        retrain_outdated_model()
        return
    seed(args)


def rescore(_: argparse.Namespace) -> None:
    from crm_app.services.risk import reassess_all_risk
    from crm_app.services.scoring import rescore_all

    started = time.perf_counter()
    with Session(get_engine()) as session:
        count = rescore_all(session, utcnow(), progress=lambda n: print(f"  {n:,} rescored", end="\r"))
        print(f"Rescored {count:,} leads in {time.perf_counter() - started:.1f} s.")
        started = time.perf_counter()
        count = reassess_all_risk(session, utcnow())
    print(f"Reassessed the risk of {count:,} leads in {time.perf_counter() - started:.1f} s.")


def sweep(_: argparse.Namespace) -> None:
    from crm_app.services.scoring import rescore_expired

    with Session(get_engine()) as session:
        print(f"Rescored {rescore_expired(session, utcnow()):,} leads.")
        print(f"Reassessed the risk of {_reassess_expired_risk(session):,} deals.")


def import_csv(args: argparse.Namespace) -> int:
    from crm_app.services.errors import ServiceError
    from crm_app.services.import_runs import ImportCancelled, ImportControl
    from crm_app.services.importing import ImportProgress, ImportRejected, import_file, load_mapping

    def show(step: ImportProgress) -> None:
        if step.phase == "reading":
            print(f"  {step.rows_read:,} rows read and checked", end="\r", flush=True)
        elif step.phase != "done":
            print(f"  {step.message}" + " " * 20, flush=True)

    def run(control: ImportControl):
        with Session(get_engine()) as session:
            return import_file(session, args.file, mapping, now=utcnow(), dry_run=args.dry_run, progress=show,
                               control=control)

    try:
        mapping = load_mapping(args.mapping)
        summary = _cancellable(run)
    except ImportCancelled as cancelled:
        print(f"\n{cancelled}")
        return 130
    except ImportRejected as rejected:
        print(f"\nNot imported: {rejected}")
        print(f"  file: {args.file}")
        for error in (rejected.report.errors if rejected.report else [])[:50]:
            where = f"row {error.row}" if error.row else "file"
            print(f"  {where}{', column ' + error.column if error.column else ''}: {error.message}")
        _print_notes(rejected.report.warnings if rejected.report else [])
        return 1
    except ServiceError as error:
        print(f"Not imported: {error}")
        return 1
    print()
    print(summary.describe() + (" Dry run: nothing was stored." if args.dry_run else ""))
    _print_notes(summary.notes)
    return 0


def _cancellable(run):
    """Run `run(control)` in a thread so Ctrl-C can cancel it: a signal reaches Python's main thread
    only between bytecodes, never inside a database call, so the main thread waits and, on Ctrl-C,
    cancels the running statement (the import rolls back and raises ImportCancelled)."""
    import threading

    from crm_app.services.import_runs import ImportControl

    control = ImportControl()
    outcome: dict = {}

    finished = threading.Event()  # not Thread.join: a join cut by Ctrl-C may take the thread for ended

    def target() -> None:
        try:
            outcome["value"] = run(control)
        except BaseException as error:  # handed to the main thread
            outcome["error"] = error
        finally:
            finished.set()

    threading.Thread(target=target, name="import", daemon=True).start()
    while not finished.is_set():
        try:
            finished.wait(0.2)
        except KeyboardInterrupt:
            print("\n  Cancelling (nothing will be stored)...", flush=True)
            control.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _print_notes(notes) -> None:
    if notes:
        print("Notes (they do not stop the import):")
        for note in notes:
            print(f"  {note.message}")


def train(args: argparse.Namespace) -> int:
    from crm_app.services.errors import ServiceError
    from crm_app.services.model_training import train_model

    with Session(get_engine()) as session:
        try:
            report = train_model(session, now=utcnow(), progress=lambda message: print(f"  {message}"),
                                 keep_fields=args.keep_field or ())
        except ServiceError as error:
            print(f"Not trained: {error}")
            return 1
    print(f"\nModel version {report.version} on {report.rows:,} closed leads:\n")
    print(report.summary)
    print(f"\nStored, not in use yet: `activate --version {report.version}` makes it the active model, "
          "`engine model` scores the leads with it.")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from crm_app.scoring.training import NotEnoughHistory, check_history, cross_validate, format_report
    from crm_app.services.model_training import list_models, load_closed_leads, stored_metrics

    if args.folds:
        # The training recipe on random folds of the closed leads: the fair measure for history
        # whose dates mean little (an import of a public data set, a CRM export without dates).
        with Session(get_engine()) as session:
            leads = load_closed_leads(session, now=utcnow())
        try:
            check_history(sum(lead.won for lead in leads), sum(not lead.won for lead in leads))
        except NotEnoughHistory as error:
            print(f"Not evaluated: {error}")
            return 1
        print(cross_validate(leads, folds=args.folds, keep_fields=args.keep_field or (),
                             progress=lambda message: print(f"  {message}")).summary())
        return 0
    with Session(get_engine()) as session:
        models = [m for m in list_models(session, limit=1000) if args.version in (None, m.version)]
        if not models:
            print("No stored model" + (f" version {args.version}" if args.version else "") + ": run `train` first.")
            return 1
        model = models[0]
        metrics = stored_metrics(session, model.id)
    print(f"Model version {model.version}, trained {model.trained_at:%Y-%m-%d %H:%M} on {model.rows:,} closed leads"
          f"{' (active)' if model.is_active else ''}.\n")
    print(format_report(metrics))
    return 0


def _rescore_after_switch(session: Session, before) -> None:
    """Rescore what a switch changed (open leads, and the closed deals a model learned from), here and
    now, with the same job the model page runs; say what happened."""
    from crm_app.services.scoring import engine_config
    from crm_app.services.scoring_jobs import RESCORE, latest_job, rescore_if_changed, run_rescore_job

    if engine_config(session).key == before.key:
        print("Scores unchanged: the same engine scores as before.")
        return
    job_id = rescore_if_changed(session, before, now=utcnow(), actor=None)
    if job_id is None:
        print("A rescoring is already running; it switches to the new engine by itself.")
        return
    run_rescore_job(lambda: Session(get_engine(), expire_on_commit=False), job_id, clock=utcnow)
    job = latest_job(session, RESCORE)
    print(job.message if job.status == "succeeded" else job.error)


def activate(args: argparse.Namespace) -> int:
    from crm_app.services.model_training import activate_model, list_models
    from crm_app.services.scoring import engine_config
    from crm_app.services.scoring_settings import engine_status

    with Session(get_engine()) as session:
        model = next((m for m in list_models(session, limit=100_000) if m.version == args.version), None)
        if model is None:
            print(f"No stored model version {args.version}: `evaluate` lists them after `train`.")
            return 1
        before = engine_config(session)
        activate_model(session, model.id, actor=None)  # the command line acts as the tables' owner
        status = engine_status(session, now=utcnow())
        print(f"Model version {model.version} is the active model. Scoring now: {status.effective_label}"
              + ("." if status.effective != "rules"
                 else " (`engine model` scores the leads with the model)."))
        _rescore_after_switch(session, before)
    return 0


def engine(args: argparse.Namespace) -> int:
    from crm_app.services.errors import InvalidInput
    from crm_app.services.scoring import engine_config
    from crm_app.services.scoring_settings import engine_status, set_engine_choice

    with Session(get_engine()) as session:
        before = engine_config(session)
        try:
            set_engine_choice(session, mode=args.mode, blend_percent=args.weight, now=utcnow(), actor=None)
        except InvalidInput as error:
            print(f"Not changed: {error}")
            return 1
        status = engine_status(session, now=utcnow())
        print(f"Scoring now: {status.effective_label}." + (f" {status.note}" if status.note else ""))
        _rescore_after_switch(session, before)
    return 0


def mine_plays(_: argparse.Namespace) -> None:
    from crm_app.services.next_action import refresh_play_stats

    started = time.perf_counter()
    with Session(get_engine()) as session:
        rows = refresh_play_stats(session, utcnow())
    print(f"Play statistics: {rows:,} segment rows in {time.perf_counter() - started:.1f} s.")


def create_admin(args: argparse.Namespace) -> None:
    import getpass

    from crm_app.services.accounts import create_first_admin
    from crm_app.services.errors import ServiceError

    password = os.environ.get("CRM_ADMIN_PASSWORD") or getpass.getpass("Password for the admin: ")
    with Session(get_engine()) as session:
        try:
            admin = create_first_admin(session, email=args.email, name=args.name, password=password, now=utcnow())
        except ServiceError as error:
            sys.exit(str(error))
    print(f"Admin {admin.name} <{admin.email}> can sign in now.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crm_app.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate").set_defaults(run=migrate)
    for name, run in (("seed", seed), ("setup", setup)):
        sub = commands.add_parser(name)
        sub.add_argument("--leads", type=int, default=3000, help="how many demo leads (default 3000)")
        sub.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        sub.add_argument("--reset", action="store_true", help="delete all data first")
        sub.add_argument("--no-model", action="store_true",
                         help="keep the rules scoring (default: train a model on the demo history and use it)")
        sub.set_defaults(run=run)
    commands.add_parser("rescore").set_defaults(run=rescore)
    commands.add_parser("sweep").set_defaults(run=sweep)
    sub = commands.add_parser("import", help="import a CSV of leads")
    sub.add_argument("file", type=Path, help="the CSV file (any delimiter; UTF-8 or Latin-1)")
    sub.add_argument("--mapping", type=Path, required=True, help="JSON mapping, e.g. docs/mappings/bank-marketing.json")
    sub.add_argument("--dry-run", action="store_true", help="check and count, store nothing")
    sub.set_defaults(run=import_csv)
    sub = commands.add_parser("train")
    sub.add_argument("--keep-field", action="append", metavar="NAME",
                     help="keep this custom field although it alone predicts the outcome or looks like an id "
                          "(repeat for several)")
    sub.set_defaults(run=train)
    sub = commands.add_parser("evaluate")
    sub.add_argument("--version", type=int, default=None, help="model version (default: the newest)")
    sub.add_argument("--folds", type=int, default=0,
                     help="instead: cross-validate the training recipe on N random folds of the closed leads")
    sub.add_argument("--keep-field", action="append", metavar="NAME", help="with --folds: as for train")
    sub.set_defaults(run=evaluate)
    sub = commands.add_parser("activate", help="make a stored model version the active one")
    sub.add_argument("--version", type=int, required=True)
    sub.set_defaults(run=activate)
    sub = commands.add_parser("engine", help="choose what scores the leads")
    sub.add_argument("mode", choices=("rules", "model", "blend"))
    sub.add_argument("--weight", default=None, metavar="PERCENT",
                     help="the model's share of a blend, 0-100 (default: the stored share)")
    sub.set_defaults(run=engine)
    commands.add_parser("mine-plays").set_defaults(run=mine_plays)
    admin = commands.add_parser("create-admin")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    admin.set_defaults(run=create_admin)
    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
