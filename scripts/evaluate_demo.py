"""Train and judge the scoring model on the demo team's history, through the app's own training code.

    python scripts/evaluate_demo.py [--leads 3000] [--seed 42] [--database-url URL]

Generates the deterministic demo team (the one `start.sh` seeds) in a scratch database, loads its
closed deals as the model sees them (each at a moment of its open life, with only the activities
before it) and prints model vs rules on the newest 20 % (the time holdout) and on 5 random folds:
ROC-AUC, PR-AUC, Brier, win rate and lift of the top 20 %. The scratch database is dropped after.

Used to measure what a change to the features or the training costs or gains in ranking quality.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import embedded_server_url, ensure_database, make_engine, normalize_url  # noqa: E402
from crm_app.db.migrate import upgrade_to_head  # noqa: E402
from crm_app.demo.generator import generate_demo_data  # noqa: E402
from crm_app.scoring.training import cross_validate, fit_scoring_model  # noqa: E402
from crm_app.services.model_training import load_closed_leads  # noqa: E402

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="a server to make the scratch database on")
    args = parser.parse_args()

    server = normalize_url(args.database_url) if args.database_url else embedded_server_url()
    admin_url = make_url(server).set(database="postgres").render_as_string(hide_password=False)
    name = f"crm_eval_demo_{uuid.uuid4().hex[:8]}"
    ensure_database(admin_url, name)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        engine = make_engine(url)
        generate_demo_data(engine, leads=args.leads, seed=args.seed, now=NOW)
        with Session(engine) as session:
            leads = load_closed_leads(session, now=NOW)
        engine.dispose()
        won = sum(lead.won for lead in leads)
        print(f"Demo history: {len(leads):,} closed deals ({won:,} won), seed {args.seed}\n")
        print("Time holdout (the newest 20 %):")
        print(fit_scoring_model(leads).summary().split("\n\nCalibration")[0])
        print()
        print(cross_validate(leads, folds=args.folds).summary())
    finally:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
