"""The quick-add form ("+ Lead" on every page, or the "n" key): a short form that creates a lead
through the services (crm_app/services/lead_actions.create_lead) and opens its page."""

from __future__ import annotations

import reflex as rx

from crm_app.db.queries import UserOption
from crm_app.domain import Source, Stage
from crm_app.services.errors import Forbidden, InvalidInput, ServiceError
from crm_app.services.lead_actions import create_lead
from crm_app.services.lead_detail import LEAD_TEXT_LIMITS, LeadEdit
from crm_app.state.base import AppState, now_utc, submitted, typed_into

POOL = "pool"  # the owner select's "unassigned pool" (a select item cannot have an empty value)
# Every field the form shows, with its input's length limit: the text fields' are the leads table's
# column lengths, as the service checks them (services/lead_detail.LEAD_TEXT_LIMITS).
FORM_LIMITS = {**{k: LEAD_TEXT_LIMITS[k] for k in ("name", "email", "company")}, "company_size": 12, "source": 40,
               "deal_value": 20, "stage": 40, "owner_id": 20}


def owner_choices(viewer_id: str, viewer_role: str, users: list[UserOption]) -> list[list[str]]:
    """[value, label] pairs a role may give a lead to: a rep, themself or the pool; a manager, the
    pool or anyone active on the team (the services refuse anything else)."""
    pool = [POOL, "Unassigned pool"]
    if viewer_role in ("manager", "admin"):
        return [pool, *[[str(u.id), u.name + (" (me)" if str(u.id) == viewer_id else "")] for u in users]]
    return [[viewer_id, "Me"], pool] if viewer_id else [pool]


def owner_text(choice: str) -> str:
    """The owner select's value as the services read it ("" for the pool)."""
    return "" if choice == POOL else choice


class NewLeadState(AppState):
    form_open: bool = False
    draft: dict[str, str] = {}
    errors: dict[str, str] = {}
    saving: bool = False

    @rx.var
    def owner_options(self) -> list[list[str]]:
        return owner_choices(self.viewer_id, self.viewer_role, self.users)

    @rx.event
    async def open_form(self):
        await self._actor()  # a signed-out browser goes to the sign-in page instead
        self.draft = {"name": "", "email": "", "company": "", "company_size": "", "source": Source.WEBSITE.value,
                      "deal_value": "", "stage": Stage.NEW.value, "owner_id": self.viewer_id or POOL}
        self.errors, self.saving, self.form_open = {}, False, True

    @rx.event
    def set_form_open(self, value: bool):
        self.form_open = value is True

    @rx.event
    def set_field(self, name: str, value: str):
        if not isinstance(name, str):  # a crafted event: only the form's own fields are typed into
            return
        self.draft, self.errors = typed_into(self.draft, self.errors, name, value, FORM_LIMITS.get(name, 0))
        self.errors = {k: v for k, v in self.errors.items() if k != "form"}

    @rx.event
    async def save(self, form: dict | None = None):
        self.draft = submitted(self.draft, form, FORM_LIMITS)
        draft, now = dict(self.draft), now_utc()
        edit = LeadEdit(name=draft.get("name", ""), email=draft.get("email", ""), company=draft.get("company", ""),
                        company_size=draft.get("company_size", ""), deal_value=draft.get("deal_value", "") or "0",
                        source=draft.get("source", ""), owner_id=owner_text(draft.get("owner_id", POOL)))
        stage = draft.get("stage", Stage.NEW.value)
        self.saving = True
        try:
            lead = await self._db(lambda s: create_lead(s, edit=edit, stage=stage, now=now))
        except InvalidInput as error:  # every bad field at once, each under its input
            self.errors = {field if field in FORM_LIMITS else "form": message
                           for field, message in error.errors.items()} or {"form": str(error)}
            return
        except Forbidden as error:
            self.errors = {"owner_id": str(error)}
            return
        except ServiceError as error:
            self.errors = {"form": str(error)}
            return
        finally:
            self.saving = False
        self.form_open = False
        return [rx.redirect(f"/leads/{lead.id}"), rx.toast.success(f"Added {lead.name} · score {lead.score}")]
