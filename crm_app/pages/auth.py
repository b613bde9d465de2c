"""Sign-in (and first admin), one's account, the team's users (admin) and the audit log (managers)."""

from __future__ import annotations

import reflex as rx

from crm_app.components.confirm import confirm_dialog
from crm_app.components.controls import MUTED, choice, data_table, form_field
from crm_app.components.layout import page_frame
from crm_app.state.database import reconnecting_notice
from crm_app.services.accounts import MIN_PASSWORD, UserRow
from crm_app.services.audit import AuditRow
from crm_app.state.auth import USER_LIMITS, AccountState, AuditState, SignInState, UsersState



def sign_in_page() -> rx.Component:
    S = SignInState
    form = rx.form(
        rx.vstack(
            rx.cond(
                S.first_run,
                rx.vstack(
                    rx.callout("No admin yet: create the first admin account. You can add the team after.",
                               icon="info", size="1", width="100%"),
                    form_field("Your name", "name", S.name, lambda v: S.set_field("name", v), S.errors,
                           autocomplete="name"),
                    spacing="3",
                    width="100%",
                ),
            ),
            form_field("Email", "email", S.email, lambda v: S.set_field("email", v), S.errors, kind="email",
                   autocomplete="username"),
            form_field("Password", "password", S.password, lambda v: S.set_field("password", v), S.errors,
                   kind="password", autocomplete=rx.cond(S.first_run, "new-password", "current-password"),
                   hint=rx.cond(S.first_run, f"At least {MIN_PASSWORD} characters.", "")),
            rx.cond(
                S.first_run,
                form_field("Password again", "confirm", S.confirm, lambda v: S.set_field("confirm", v), S.errors,
                       kind="password", autocomplete="new-password"),
            ),
            rx.cond(S.message != "", rx.callout(S.message, icon="triangle-alert", color_scheme="tomato",
                                                size="1", width="100%", class_name="sign-in-message")),
            rx.button(rx.cond(S.first_run, "Create admin and sign in", "Sign in"), type="submit", size="3",
                      width="100%", loading=S.busy, class_name="sign-in-submit"),
            spacing="4",
            width="100%",
        ),
        on_submit=S.submit,
        reset_on_submit=False,
        no_validate=True,  # the app's own checks answer under each field, in words
        width="100%",
    )
    return rx.center(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.center(rx.icon("target", size=20, color="white"), width="32px", height="32px",
                              background=rx.color("accent", 9), border_radius="8px"),
                    rx.heading("Pipeline CRM", size="5"),
                    align="center",
                    spacing="2",
                ),
                rx.text(rx.cond(S.first_run, "Set up your team", "Sign in to see what to do right now"),
                        color=MUTED, size="2"),
                reconnecting_notice(),
                form,
                # Present once the page's state has arrived (what is typed before could be overwritten).
                rx.cond(S.is_hydrated, rx.box(class_name="sign-in-ready", display="none")),
                spacing="4",
                width="100%",
            ),
            size="4",
            width="400px",
            max_width="94vw",
        ),
        min_height="100vh",
        background=rx.color("gray", 2),
    )


def account_page() -> rx.Component:
    S = AccountState
    return page_frame(
        "Account",
        "Your password. Changing it signs you out in every other browser.",
        rx.card(
            rx.form(
                rx.vstack(
                    form_field("Current password", "current", S.current, lambda v: S.set_field("current", v),
                           S.errors, kind="password", autocomplete="current-password"),
                    form_field("New password", "new", S.new, lambda v: S.set_field("new", v), S.errors,
                           kind="password", autocomplete="new-password", hint=f"At least {MIN_PASSWORD} characters."),
                    form_field("New password again", "confirm", S.confirm, lambda v: S.set_field("confirm", v),
                           S.errors, kind="password", autocomplete="new-password"),
                    rx.hstack(
                        rx.button("Change password", type="submit", class_name="change-password"),
                        rx.cond(S.saved, rx.badge(rx.icon("check", size=12), "Password changed",
                                                  color_scheme="grass", variant="soft", class_name="password-saved")),
                        align="center",
                    ),
                    spacing="3",
                    width="100%",
                ),
                on_submit=lambda _: S.change_password(),
                reset_on_submit=False,
                no_validate=True,
            ),
            max_width="420px",
            size="3",
        ),
    )


def _user_row(row: UserRow) -> rx.Component:
    S = UsersState
    return rx.table.row(
        rx.table.cell(rx.text(row.name, weight="medium")),
        rx.table.cell(rx.text(row.email, color=MUTED)),
        rx.table.cell(
            rx.select(S.role_options, value=row.role, on_change=lambda v: S.set_role(row.id, v), size="1",
                      disabled=~row.is_active)
        ),
        rx.table.cell(
            rx.cond(row.is_active,
                    rx.cond(row.can_sign_in, rx.badge("Active", color_scheme="grass", variant="soft"),
                            rx.badge("No password yet", color_scheme="amber", variant="soft")),
                    rx.badge("Deactivated", color_scheme="gray", variant="soft"))
        ),
        rx.table.cell(
            rx.button(rx.cond(row.is_active, "Deactivate", "Reactivate"), size="1", variant="soft",
                      color_scheme=rx.cond(row.is_active, "tomato", "grass"),
                      on_click=S.set_active(row.id, ~row.is_active))
        ),
        class_name="user-row",
        data_email=row.email,
    )


def users_page() -> rx.Component:
    S = UsersState
    add = rx.card(
        rx.form(
            rx.vstack(
                rx.text("Add a teammate", weight="bold"),
                rx.hstack(
                    form_field("Name", "name", S.draft["name"], lambda v: S.set_draft("name", v), S.errors,
                               max_length=USER_LIMITS["name"]),
                    form_field("Email", "email", S.draft["email"], lambda v: S.set_draft("email", v), S.errors,
                               kind="email", max_length=USER_LIMITS["email"]),
                    rx.vstack(
                        rx.text("Role", size="2", weight="medium"),
                        rx.select(S.role_options, value=S.draft["role"], on_change=lambda v: S.set_draft("role", v),
                                  size="3"),
                        spacing="1",
                    ),
                    form_field("First password", "password", S.draft["password"],
                           lambda v: S.set_draft("password", v), S.errors, kind="password",
                           autocomplete="new-password", hint=f"At least {MIN_PASSWORD} characters.",
                           max_length=USER_LIMITS["password"]),
                    spacing="3",
                    width="100%",
                    align="start",
                ),
                rx.button("Add user", type="submit", class_name="add-user"),
                spacing="3",
                width="100%",
            ),
            on_submit=S.add_user,
            reset_on_submit=False,
            no_validate=True,
        ),
        width="100%",
    )
    return page_frame(
        "Users",
        "Who can sign in, and with which role. Reps see their own leads and the unassigned pool.",
        confirm_dialog(open=S.confirm_open, on_open_change=S.set_confirm_open, title=S.confirm_title,
                       impact=S.confirm_impact, detail=S.confirm_detail, confirm_label="Deactivate",
                       on_confirm=S.confirm_deactivate, class_name="deactivate-confirm", color_scheme="tomato"),
        rx.cond(
            S.viewer_is_admin,
            rx.vstack(
                rx.cond(S.message != "", rx.callout(S.message, icon="info", size="1", class_name="users-message")),
                data_table(("Name", "Email", "Role", "Status", ""), S.accounts, _user_row),
                add,
                spacing="4",
                width="100%",
            ),
            rx.callout(S.message, icon="lock", color_scheme="tomato", class_name="refused"),
        ),
    )


def _audit_row(row: AuditRow) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row.at_label, size="2", color=MUTED, white_space="nowrap")),
        rx.table.cell(rx.text(row.actor, size="2", weight="medium")),
        rx.table.cell(rx.badge(row.action_label, variant="soft", color_scheme="indigo")),
        rx.table.cell(
            rx.cond(row.lead_id, rx.link(f"Lead #", row.lead_id, href="/leads/" + row.lead_id.to(str), size="2"),
                    rx.text(row.entity, " #", row.entity_id, size="2", color=MUTED))
        ),
        rx.table.cell(rx.text(row.change, size="2", class_name="audit-change")),
        class_name="audit-row",
    )


def audit_page() -> rx.Component:
    S = AuditState
    filters = rx.hstack(
        choice(S.action, S.set_action, None, "Action", "220px", items=S.action_options),
        choice(S.actor, S.set_actor, [("all", "Everyone")], "Who", "200px", items=S.actor_options),
        spacing="3",
        wrap="wrap",
    )
    return page_frame(
        "Audit log",
        "Who changed what, and when, with the values before and after.",
        rx.cond(
            S.viewer_is_manager,
            rx.vstack(
                filters,
                data_table(("When (UTC)", "Who", "What", "Record", "Change"), S.rows, _audit_row,
                           empty=rx.text("No changes recorded for this filter.", color=MUTED)),
                rx.cond(S.has_more, rx.button("Older changes", variant="soft", on_click=S.older)),
                spacing="4",
                width="100%",
            ),
            rx.callout(S.message, icon="lock", color_scheme="tomato", class_name="refused"),
        ),
    )
