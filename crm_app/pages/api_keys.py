"""/api-keys (admin): keys other systems use to call the REST API, each acting as one teammate."""

from __future__ import annotations

import reflex as rx

from crm_app.components.confirm import confirm_dialog
from crm_app.components.controls import MUTED, data_table, form_field, select_field
from crm_app.components.layout import page_frame
from crm_app.services.api_keys import KeyRow
from crm_app.state.api_keys import ApiKeysState as S

DOCS = "/api/v1/docs"


def _key_row(row: KeyRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.vstack(rx.text(row.name, weight="medium"),
                                rx.code(row.prefix, "…", size="1", variant="ghost"), spacing="0")),
        rx.table.cell(rx.badge(row.scope, color_scheme=rx.cond(row.scope == "write", "indigo", "gray"),
                               variant="soft")),
        rx.table.cell(rx.text(row.acts_as, size="2"), rx.text(row.acts_as_role, size="1", color=MUTED)),
        rx.table.cell(rx.text(row.rate_per_minute, "/min", size="2")),
        rx.table.cell(rx.text(row.created_label, size="2", color=MUTED, white_space="nowrap")),
        rx.table.cell(rx.text(row.last_used_label, size="2", color=MUTED, white_space="nowrap")),
        rx.table.cell(
            rx.cond(row.revoked,
                    rx.badge("Revoked ", row.revoked_label, color_scheme="gray", variant="soft"),
                    rx.button("Revoke", size="1", variant="soft", color_scheme="tomato",
                              on_click=S.revoke(row.id), class_name="revoke-key"))
        ),
        class_name="key-row",
        data_name=row.name,
        opacity=rx.cond(row.revoked, "0.6", "1"),
    )


def _new_secret() -> rx.Component:
    return rx.cond(
        S.new_secret != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("key-round")),
            rx.vstack(
                rx.text("Copy the key for \u201c", S.new_secret_name, "\u201d now: it is shown only once.",
                        weight="bold"),
                rx.hstack(
                    rx.code(S.new_secret, class_name="new-secret", size="2", variant="outline"),
                    rx.button(rx.icon("copy", size=14), "Copy", size="1", variant="soft",
                              on_click=[rx.set_clipboard(S.new_secret), rx.toast.success("Copied")]),
                    rx.button("Done", size="1", variant="ghost", on_click=S.forget_secret),
                    align="center",
                    wrap="wrap",
                ),
                rx.text("Send it as ", rx.code("Authorization: Bearer <key>"), ".", size="2"),
                spacing="2",
            ),
            color_scheme="grass",
            width="100%",
        ),
    )


def _create_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.text("Create a key", weight="bold"),
                rx.hstack(
                    form_field("Name", "name", S.draft["name"], lambda v: S.set_draft("name", v), S.errors,
                               hint="What uses it, like \u201cWebsite forms\u201d."),
                    select_field("Acts as", "user", S.draft["user"], lambda v: S.set_draft("user", v), S.errors,
                                 items=S.people, hint="It sees and changes what they may.", width="220px",
                                 placeholder="Choose a teammate", class_name="key-user"),
                    select_field("Scope", "scope", S.draft["scope"], lambda v: S.set_draft("scope", v), S.errors,
                                 [("write", "Write (and read)"), ("read", "Read only")], width="170px"),
                    form_field("Requests per minute", "rate", S.draft["rate"], lambda v: S.set_draft("rate", v),
                               S.errors, hint="Over it, the API answers 429."),
                    spacing="3",
                    width="100%",
                    align="start",
                ),
                rx.button("Create key", type="submit", class_name="create-key"),
                spacing="3",
                width="100%",
            ),
            on_submit=S.create,
            reset_on_submit=False,
            no_validate=True,
        ),
        width="100%",
    )


def api_keys_page() -> rx.Component:
    return page_frame(
        "API keys",
        rx.fragment("Websites, forms and email tools send leads and events with these keys. ",
                    rx.link("API documentation", href=DOCS, is_external=True), "."),
        confirm_dialog(open=S.confirm_open, on_open_change=S.set_confirm_open, title=S.confirm_title,
                       impact=S.confirm_impact, detail=S.confirm_detail, confirm_label="Revoke key",
                       on_confirm=S.confirm_revoke, class_name="revoke-confirm", color_scheme="tomato"),
        rx.cond(
            S.viewer_is_admin,
            rx.vstack(
                _new_secret(),
                rx.cond(S.message != "", rx.callout(S.message, icon="info", size="1", class_name="keys-message")),
                data_table(("Key", "Scope", "Acts as", "Limit", "Created", "Last used", ""), S.keys, _key_row,
                           empty=rx.text("No keys yet.", color=MUTED)),
                _create_form(),
                spacing="4",
                width="100%",
            ),
            rx.callout(S.message, icon="lock", color_scheme="tomato", class_name="refused"),
        ),
    )
