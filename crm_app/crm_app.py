"""Builds the app and registers its pages; nothing else happens here."""

import reflex as rx

from crm_app.pages.lead_detail import lead_detail_page
from crm_app.pages.leads import leads_page
from crm_app.pages.pipeline import pipeline_page
from crm_app.state.lead_detail import LeadDetailState
from crm_app.state.leads import LeadsState
from crm_app.state.pipeline import PipelineState

app = rx.App()
app.add_page(leads_page, route="/", title="Leads · Pipeline CRM", on_load=LeadsState.load)
app.add_page(leads_page, route="/leads", title="Leads · Pipeline CRM", on_load=LeadsState.load)
app.add_page(lead_detail_page, route="/leads/[lead_id]", title="Lead · Pipeline CRM", on_load=LeadDetailState.load)
app.add_page(pipeline_page, route="/pipeline", title="Pipeline · Pipeline CRM", on_load=PipelineState.load)
