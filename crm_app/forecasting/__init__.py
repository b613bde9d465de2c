"""Revenue forecasting: pure functions over plain data (no Reflex, no SQL, no clock).

- `timing`: when an open deal closes, from the team's closed deals (Aalen-Johansen by stage, days in it
  and age).
- `forecast`: won revenue per month, expected and an 80% interval by simulation over the deals.
- `backtest`: the three methods compared with what was actually won (MAPE, interval coverage).

The services in `crm_app/services/forecast.py` read the facts in SQL and call these.
"""

from crm_app.forecasting.forecast import (
    BOOTSTRAPS,
    FreshHistory,
    MonthWindow,
    OpenDeal,
    WindowForecast,
    forecast_windows,
    run_rate,
    stage_weighted,
)
from crm_app.forecasting.timing import CREATED, HistoryRow, TimingModel, fit_timing

__all__ = [
    "BOOTSTRAPS",
    "CREATED",
    "FreshHistory",
    "HistoryRow",
    "MonthWindow",
    "OpenDeal",
    "TimingModel",
    "WindowForecast",
    "fit_timing",
    "forecast_windows",
    "run_rate",
    "stage_weighted",
]
