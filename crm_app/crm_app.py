"""Builds the app and registers its pages; nothing else happens here."""

import reflex as rx

from crm_app.pages.dashboard import dashboard_page
from crm_app.pages.leads import leads_page
from crm_app.state.dashboard import DashboardState
from crm_app.state.leads import LeadsState

app = rx.App()
app.add_page(leads_page, route="/", title="Leads · Pipeline CRM", on_load=LeadsState.load)
app.add_page(dashboard_page, route="/dashboard", title="Today · Pipeline CRM", on_load=DashboardState.load)
