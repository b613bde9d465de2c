"""The "+ Lead" button every page's sidebar shows, its short form, and the "n" shortcut that opens it."""

from __future__ import annotations

import reflex as rx

from crm_app.components.controls import ERROR, dialog_footer, form_field, select_field
from crm_app.domain import Source, Stage
from crm_app.state.new_lead import FORM_LIMITS
from crm_app.state.new_lead import NewLeadState as S

BUTTON_ID = "quick-add-lead"
# Installed once per tab: "n" clicks the button unless the user is typing (an input, a text area, a
# select, anything editable) or a dialog or menu is open. body[data-quick-add] tells tests it is ready.
SHORTCUT_JS = f"""
if (!window.__crmQuickAdd) {{
  window.__crmQuickAdd = true;
  document.addEventListener('keydown', (event) => {{
    if (event.key !== 'n' || event.ctrlKey || event.metaKey || event.altKey || event.repeat || event.defaultPrevented) return;
    const target = event.target;
    if (target instanceof Element && (target.isContentEditable || target.closest(
        'input, textarea, select, [contenteditable], [role=dialog], [role=listbox], [role=menu], [role=combobox]'))) return;
    const button = document.getElementById('{BUTTON_ID}');
    if (!button) return;
    event.preventDefault();
    button.click();
  }});
}}
document.body.dataset.quickAdd = 'ready';
"""


def quick_add_button(compact: bool = False) -> rx.Component:
    """The sidebar's "+ Lead" (with the "n" shortcut); `compact`: the phone bar's small one."""
    if compact:
        return rx.button(rx.icon("plus", size=16), "Lead", on_click=S.open_form, size="2",
                         aria_label="Add a lead", class_name="quick-add-compact")
    return rx.button(
        rx.icon("plus", size=16), "Lead",
        rx.el.kbd("N", aria_hidden="true", style={"margin_left": "auto", "font_size": "11px", "opacity": "0.8",
                                                 "padding": "0 0.4em", "border_radius": "4px",
                                                 "border": "1px solid rgba(255,255,255,0.5)"}),
        id=BUTTON_ID,
        on_click=S.open_form,
        on_mount=rx.call_script(SHORTCUT_JS),
        width="100%",
        size="2",
        title="Add a lead (N)",
        aria_label="Add a lead",
        margin_bottom="0.75em",
    )


def _field(label: str, name: str, kind: str = "text", hint: str = "") -> rx.Component:
    return form_field(label, name, S.draft.get(name, ""), lambda v: S.set_field(name, v), S.errors,
                      kind=kind, hint=hint, max_length=FORM_LIMITS[name])


def quick_add_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Add a lead"),
            rx.dialog.description("Scored as soon as it is saved; its page opens.", size="2",
                                  color=rx.color("gray", 10), margin_bottom="0.75em"),
            rx.form(
                rx.vstack(
                    _field("Name", "name"),
                    rx.hstack(_field("Email", "email", kind="email"), _field("Company", "company"), width="100%",
                              wrap=rx.breakpoints(initial="wrap", sm="nowrap")),
                    rx.hstack(
                        _field("Employees", "company_size", hint="A whole number"),
                        _field("Deal value ($)", "deal_value", hint="Like 12,000"),
                        width="100%",
                        wrap=rx.breakpoints(initial="wrap", sm="nowrap"),
                    ),
                    rx.hstack(
                        select_field("Source", "source", S.draft.get("source", ""), lambda v: S.set_field("source", v),
                                     S.errors, [(s.value, s.label) for s in Source]),
                        select_field("Stage", "stage", S.draft.get("stage", ""), lambda v: S.set_field("stage", v),
                                     S.errors, [(s.value, s.label) for s in Stage]),
                        select_field("Owner", "owner_id", S.draft.get("owner_id", ""),
                                     lambda v: S.set_field("owner_id", v), S.errors, items=S.owner_options),
                        width="100%",
                        wrap=rx.breakpoints(initial="wrap", sm="nowrap"),
                    ),
                    rx.cond(S.errors.contains("form"),
                            rx.text(S.errors["form"], size="2", color=ERROR, class_name="error-form")),
                    dialog_footer(rx.button("Add lead", type="submit", loading=S.saving, class_name="quick-add-save")),
                    spacing="3",
                    width="100%",
                ),
                on_submit=S.save,
                reset_on_submit=False,
                no_validate=True,  # our messages, under each field, not the browser's bubbles
            ),
            max_width="620px",
            class_name="quick-add-form",
        ),
        open=S.form_open,
        on_open_change=S.set_form_open,
    )


__all__ = ["quick_add_button", "quick_add_dialog", "FORM_LIMITS"]
