"""Builds the app and registers its pages; nothing else happens here."""

import reflex as rx

from crm_app.api import api
from crm_app.http_security import with_security_headers
from crm_app.closed_tabs import forget_closed_tabs
from crm_app.live import listen_for_changes
from crm_app.memory_report import report_memory
from crm_app.move_writer import stop_writers_at_exit
from crm_app.pages.analytics import analytics_page
from crm_app.pages.api_keys import api_keys_page
from crm_app.pages.auth import account_page, audit_page, sign_in_page, users_page
from crm_app.pages.dashboard import dashboard_page
from crm_app.pages.forecast import forecast_page
from crm_app.pages.importing import import_page
from crm_app.pages.lead_detail import lead_detail_page
from crm_app.pages.leads import leads_page
from crm_app.pages.model import model_page
from crm_app.pages.pipeline import pipeline_page
from crm_app.pages.settings import settings_page
from crm_app.state.analytics import AnalyticsState
from crm_app.state.api_keys import ApiKeysState
from crm_app.state.auth import AccountState, AuditState, SignInState, UsersState
from crm_app.state.dashboard import DashboardState
from crm_app.state.forecast import ForecastState
from crm_app.state.importing import ImportState
from crm_app.state.lead_detail import LeadDetailState
from crm_app.state.leads import LeadsState
from crm_app.state.model import ModelState
from crm_app.state.pipeline import PipelineState
from crm_app.state.base import handle_backend_exception
from crm_app.state.settings import SettingsState
from crm_app.upload_guard import with_upload_guard

# Backend routes (the API, the CSV export, the session cookie) share the app's port; an upload is
# checked (session, role, size) before Reflex reads it (crm_app/upload_guard.py); every answer,
# pages included, carries the security headers (crm_app/http_security.py).
# assets/crm.css: the phone layout and other rules style props cannot express.
app = rx.App(api_transformer=[api, with_upload_guard, with_security_headers],
             backend_exception_handler=handle_backend_exception, stylesheets=["/crm.css"])
# The home page answers "what should I do right now?".
app.add_page(dashboard_page, route="/", title="Today · Pipeline CRM", on_load=DashboardState.load)
app.add_page(dashboard_page, route="/dashboard", title="Today · Pipeline CRM", on_load=DashboardState.load)
app.add_page(pipeline_page, route="/pipeline", title="Pipeline · Pipeline CRM", on_load=PipelineState.load)
app.add_page(leads_page, route="/leads", title="Leads · Pipeline CRM", on_load=LeadsState.load)
app.add_page(lead_detail_page, route="/leads/[lead_id]", title="Lead · Pipeline CRM", on_load=LeadDetailState.load)
app.add_page(analytics_page, route="/analytics", title="Analytics · Pipeline CRM", on_load=AnalyticsState.load)
app.add_page(forecast_page, route="/forecast", title="Forecast · Pipeline CRM", on_load=ForecastState.load)
app.add_page(model_page, route="/model", title="Model · Pipeline CRM", on_load=ModelState.load)
app.add_page(settings_page, route="/settings", title="Settings · Pipeline CRM", on_load=SettingsState.load)
app.add_page(import_page, route="/import", title="Import · Pipeline CRM", on_load=ImportState.load)
app.add_page(sign_in_page, route="/sign-in", title="Sign in · Pipeline CRM", on_load=SignInState.load)
app.add_page(account_page, route="/account", title="Account · Pipeline CRM", on_load=AccountState.load)
app.add_page(users_page, route="/users", title="Users · Pipeline CRM", on_load=UsersState.load)
app.add_page(audit_page, route="/audit", title="Audit log · Pipeline CRM", on_load=AuditState.load)
app.add_page(api_keys_page, route="/api-keys", title="API keys · Pipeline CRM", on_load=ApiKeysState.load)
app.register_lifespan_task(listen_for_changes)  # open pages update when leads change
app.register_lifespan_task(forget_closed_tabs)  # closed tabs' states leave memory (one worker)
app.register_lifespan_task(stop_writers_at_exit)  # drag-and-drop moves' writer processes
app.register_lifespan_task(report_memory)  # debugging only: off unless CRM_MEMORY_REPORT is set
# Slow work (training, rescoring, sweeps) runs in job worker processes (crm_app/worker.py), not here.
