"""One lead: why it scores what it does, what happened, and what to log next."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import points_color, signed_points, tier_color
from crm_app.components.layout import page_frame
from crm_app.components.loading import loading_rows
from crm_app.components.next_action import next_action_card
from crm_app.components.next_step import next_step_panel
from crm_app.domain import REP_LOGGED_KINDS, Play, Source, Stage
from crm_app.services.lead_detail import LEAD_TEXT_LIMITS as LIMITS  # the leads table's column lengths
from crm_app.services.lead_detail import TimelineEntry
from crm_app.services.queue import SNOOZE_CHOICES
from crm_app.state.lead_detail import NO_PLAY
from crm_app.state.lead_detail import LeadDetailState as S


def card(*children, **props) -> rx.Component:
    return rx.card(*children, size="2", width="100%", **props)


def section_title(text: str) -> rx.Component:
    return rx.text(text, size="2", weight="bold", color=rx.color("gray", 11), text_transform="uppercase",
                   letter_spacing="0.04em")


def _fact(label: str, value) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", color=rx.color("gray", 10)),
        rx.text(value, size="2", weight="medium"),
        spacing="0",
        min_width="120px",
    )


def _ownership_action() -> rx.Component:
    """Claim a lead from the pool, or put one's own back (both in the audit log)."""
    return rx.cond(
        S.lead.owner_id == "",
        rx.button(rx.icon("hand", size=14), "Claim", size="2", on_click=S.claim, class_name="claim-lead"),
        rx.cond(S.lead.owner_id == S.viewer_id,
                rx.button("Return to pool", size="2", variant="soft", color_scheme="gray", on_click=S.return_to_pool,
                          class_name="return-lead")),
    )


def _summary() -> rx.Component:
    lead = S.lead
    return card(
        rx.hstack(
            rx.center(
                rx.text(lead.score, size="8", weight="bold", color="white", class_name="detail-score"),
                width="88px", height="88px", min_width="88px", border_radius="50%",
                background=rx.color(tier_color(lead.tier), 9),
            ),
            rx.vstack(
                rx.hstack(
                    rx.badge(lead.tier_label, color_scheme=tier_color(lead.tier), variant="soft", size="2"),
                    rx.text(lead.tier_advice, size="2", color=rx.color("gray", 11)),
                    align="center",
                ),
                rx.text(rx.cond(lead.title != "", lead.title + " at ", ""), lead.company, size="3",
                        color=rx.color("gray", 11)),
                rx.hstack(
                    _fact("Stage", lead.stage_label),
                    _fact("Days in stage", lead.days_in_stage),
                    _fact("Owner", lead.owner),
                    _fact("Deal value", lead.value_label),
                    _fact("Source", lead.source_label),
                    _ownership_action(),
                    spacing="5",
                    wrap="wrap",
                    padding_top="0.5em",
                    align="end",
                ),
                spacing="1",
            ),
            spacing="5",
            align="center",
        ),
    )


def _breakdown() -> rx.Component:
    return card(
        rx.vstack(
            section_title("Why this score"),
            rx.cond(
                S.lead.reasons.length() > 0,
                rx.vstack(
                    rx.foreach(
                        S.lead.reasons,
                        lambda r: rx.hstack(
                            rx.text(signed_points(r.points), weight="bold", width="3em", text_align="right",
                                    color=points_color(r.points), class_name="reason-points"),
                            rx.text(r.text, size="2"),
                            class_name="reason-row",
                            align="center",
                            width="100%",
                        ),
                    ),
                    rx.divider(),
                    rx.hstack(
                        rx.text("=", weight="bold", width="3em", text_align="right"),
                        rx.text(S.lead.score, weight="bold", class_name="reason-total"),
                        rx.text("points", size="2", color=rx.color("gray", 10)),
                        align="center",
                    ),
                    spacing="2",
                    width="100%",
                ),
                rx.text("No signals yet: nothing the prospect did has scored.", size="2",
                        color=rx.color("gray", 10)),
            ),
            spacing="3",
            width="100%",
        ),
    )


def _risk_color(level) -> rx.Var:
    return rx.match(level, ("high", "red"), ("medium", "orange"), "grass")


def _risk_panel() -> rx.Component:
    """Deal risk (scoring/risk.py): the level and the reasons with their points."""
    lead = S.lead
    return rx.cond(
        lead.risk_level != "",
        card(
            rx.vstack(
                rx.hstack(
                    section_title("Deal risk"),
                    rx.spacer(),
                    rx.badge(rx.icon("triangle-alert", size=12), lead.risk_label, " · ", lead.risk_points,
                             color_scheme=_risk_color(lead.risk_level), variant="soft", size="2",
                             class_name="risk-level"),
                    width="100%",
                    align="center",
                ),
                rx.cond(
                    lead.risk_reasons.length() > 0,
                    rx.vstack(
                        rx.foreach(
                            lead.risk_reasons,
                            lambda r: rx.hstack(
                                rx.text("+", r.points, weight="bold", width="3em", text_align="right",
                                        color=rx.color(_risk_color(lead.risk_level), 11)),
                                rx.text(r.text, size="2"),
                                class_name="risk-reason",
                                align="center",
                                width="100%",
                            ),
                        ),
                        spacing="2",
                        width="100%",
                    ),
                    rx.text("No warning signs: they reply, we keep in touch, the deal moves.", size="2",
                            color=rx.color("gray", 10)),
                ),
                spacing="3",
                width="100%",
            ),
            class_name="risk-panel",
        ),
    )


def _contact() -> rx.Component:
    lead = S.lead
    return card(
        rx.vstack(
            rx.hstack(section_title("Contact and company"), rx.spacer(),
                      rx.button(rx.icon("pencil", size=14), "Edit", variant="soft", size="1",
                                on_click=S.open_edit),
                      width="100%"),
            rx.hstack(rx.icon("mail", size=15), rx.text(rx.cond(lead.email != "", lead.email, "No email"), size="2")),
            rx.hstack(rx.icon("phone", size=15), rx.text(rx.cond(lead.phone != "", lead.phone, "No phone"), size="2")),
            rx.hstack(rx.icon("building-2", size=15),
                      rx.text(lead.company, rx.cond(lead.company_size != "", " · " + lead.company_size + " employees", ""),
                              size="2")),
            rx.hstack(rx.icon("calendar", size=15), rx.text("Created ", lead.created, size="2")),
            rx.foreach(
                lead.custom_fields,
                lambda kv: rx.hstack(rx.text(kv[0] + ":", size="2", color=rx.color("gray", 10)),
                                     rx.text(kv[1], size="2")),
            ),
            spacing="2",
            width="100%",
        ),
    )


def _stage_mover() -> rx.Component:
    return card(
        rx.vstack(
            section_title("Stage"),
            rx.select.root(
                rx.select.trigger(width="100%", aria_label="Move to stage"),
                rx.select.content(*[rx.select.item(s.label, value=s.value) for s in Stage]),
                value=S.lead.stage,
                on_change=S.move_to_stage,
            ),
            rx.cond(S.lead.lost_reason != "", rx.text("Lost: ", S.lead.lost_reason, size="2",
                                                      color=rx.color("red", 11), class_name="lost-reason")),
            rx.cond(S.stage_error != "", rx.callout(S.stage_error, icon="triangle-alert", color_scheme="red",
                                                   size="1", class_name="stage-error")),
            spacing="2",
            width="100%",
        ),
    )


def _play_select() -> rx.Component:
    """Which sales play this was, if any: what the next best action learns from."""
    return rx.select.root(
        rx.select.trigger(width="180px", aria_label="Play",
                          color=rx.cond(S.activity_error_field == "play", rx.color("red", 11), None)),
        rx.select.content(
            rx.select.item("No play", value=NO_PLAY),
            *[rx.select.item(p.label, value=p.value) for p in Play],
        ),
        value=S.activity_play,
        on_change=S.set_activity_play,
    )


_STATUS = {"overdue": ("red", "Overdue"), "due_today": ("amber", "Due today"), "planned": ("grass", "Planned")}


def _follow_up_line(line) -> rx.Component:
    return rx.hstack(
        rx.badge(rx.match(line.status, *[(k, label) for k, (_, label) in _STATUS.items()], "Planned"),
                 color_scheme=rx.match(line.status, *[(k, color) for k, (color, _) in _STATUS.items()], "grass"),
                 variant="soft", min_width="78px", justify_content="center"),
        rx.vstack(
            rx.text(rx.text.strong(line.what), " · ", line.due, " (", line.when, ")", size="2"),
            rx.cond(line.note != "", rx.text(line.note, size="1", color=rx.color("gray", 11))),
            spacing="0",
            flex="1",
        ),
        rx.button(rx.icon("check", size=14), "Done", size="1", variant="soft",
                  on_click=S.follow_up_done(line.id), class_name="follow-up-done"),
        rx.menu.root(
            rx.menu.trigger(rx.button(rx.icon("alarm-clock", size=14), "Snooze", size="1", variant="soft",
                                      color_scheme="gray", class_name="follow-up-snooze")),
            rx.menu.content(*[rx.menu.item(label, on_click=S.follow_up_snooze(line.id, key))
                              for key, label in SNOOZE_CHOICES.items()]),
        ),
        align="center",
        width="100%",
        class_name="follow-up",
        custom_attrs={"data-status": line.status},
    )


def _follow_ups() -> rx.Component:
    """Upcoming and overdue follow-ups, with Done and Snooze, and a way to schedule the next one."""
    return card(
        rx.vstack(
            rx.hstack(
                section_title("Next steps"),
                rx.spacer(),
                rx.button(rx.icon("calendar-plus", size=14), "Schedule next step", size="1", variant="soft",
                          on_click=S.offer_next_step, class_name="offer-next-step"),
                width="100%",
                align="center",
            ),
            rx.cond(
                S.follow_ups.length() > 0,
                rx.vstack(rx.foreach(S.follow_ups, _follow_up_line), spacing="2", width="100%"),
                rx.text("No next step planned.", size="2", color=rx.color("gray", 10), class_name="no-follow-ups"),
            ),
            spacing="3",
            width="100%",
        ),
        class_name="follow-ups",
    )


def _next_action() -> rx.Component:
    return rx.cond(S.next_action.play != "", next_action_card(S.next_action, section_title("Next best action")))


def _log_form() -> rx.Component:
    return card(
        rx.form(
            rx.vstack(
                section_title("Log an activity"),
                rx.hstack(
                    rx.select.root(
                        rx.select.trigger(width="180px", aria_label="Activity type"),
                        rx.select.content(*[rx.select.item(k.label, value=k.value) for k in REP_LOGGED_KINDS]),
                        value=S.activity_kind,
                        on_change=S.set_activity_kind,
                    ),
                    _play_select(),
                    rx.input(placeholder="Subject (optional)", value=S.activity_subject,
                             on_change=S.set_activity_subject, max_length=300, width="100%"),
                    width="100%",
                    wrap=rx.breakpoints(initial="wrap", md="nowrap"),  # on a phone: one control a line
                ),
                rx.text_area(placeholder="What happened? (required for a note)", value=S.activity_body,
                             on_change=S.set_activity_body, rows="3", width="100%", name="body",
                             color_scheme=rx.cond(S.activity_error_field == "body", "red", "gray")),
                rx.cond(
                    S.can_ask,
                    rx.hstack(
                        rx.text("They asked for:", size="2", color=rx.color("gray", 11)),
                        rx.checkbox("Pricing", checked=S.asked_pricing, on_change=S.set_asked_pricing,
                                    class_name="asked-pricing"),
                        rx.checkbox("A demo", checked=S.asked_demo, on_change=S.set_asked_demo,
                                    class_name="asked-demo"),
                        spacing="3",
                        align="center",
                    ),
                ),
                rx.cond(S.activity_error != "",
                        rx.text(S.activity_error, color=rx.color("red", 11), size="2", class_name="activity-error")),
                rx.hstack(
                    rx.button(rx.icon("plus", size=16), "Log activity", type="submit"),
                    rx.cond(S.score_change != "",
                            rx.badge(S.score_change, color_scheme="grass", size="2", class_name="score-change")),
                    align="center",
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=lambda _: S.submit_activity(),
            reset_on_submit=False,
            width="100%",
        ),
        # Outside the form: its buttons must never submit the activity again.
        next_step_panel("lead"),
    )


def _tone_badge(tone) -> rx.Component:
    """The sentiment of a reply or note."""
    return rx.cond(
        tone != "",
        rx.badge(
            rx.match(tone, ("positive", "Positive"), ("negative", "Negative"), "Neutral"),
            color_scheme=rx.match(tone, ("positive", "grass"), ("negative", "red"), "gray"),
            variant="soft", radius="full", size="1", class_name="tone-badge",
        ),
    )


def _timeline_item(entry: TimelineEntry) -> rx.Component:
    return rx.hstack(
        rx.center(rx.icon(entry.icon, size=16), width="32px", height="32px", min_width="32px",
                  border_radius="50%", background=rx.color("accent", 3), color=rx.color("accent", 11)),
        rx.vstack(
            rx.hstack(rx.text(entry.title, size="2", weight="medium"), _tone_badge(entry.tone), rx.spacer(),
                      rx.text(entry.at, size="1", color=rx.color("gray", 10), white_space="nowrap"),
                      width="100%"),
            rx.cond(entry.body != "", rx.text(entry.body, size="2", color=rx.color("gray", 11),
                                              white_space="pre-wrap")),
            rx.text(entry.by, size="1", color=rx.color("gray", 9)),
            spacing="1",
            width="100%",
        ),
        class_name="timeline-entry",
        key=entry.key,
        width="100%",
        align="start",
        padding_y="0.5em",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def _timeline() -> rx.Component:
    return card(
        rx.vstack(
            section_title("Timeline"),
            rx.cond(S.lead.timeline.length() > 0,
                    rx.vstack(rx.foreach(S.lead.timeline, _timeline_item), spacing="0", width="100%"),
                    rx.text("Nothing has happened yet.", size="2", color=rx.color("gray", 10))),
            spacing="2",
            width="100%",
        ),
    )


def _field(label: str, name: str, **props) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="2", weight="medium"),
        rx.input(value=S.edit.get(name, ""), on_change=lambda v: S.set_edit_field(name, v), name=name,
                 color_scheme=rx.cond(S.edit_errors.contains(name), "red", "gray"), **props),
        rx.cond(S.edit_errors.contains(name),
                rx.text(S.edit_errors[name], size="1", color=rx.color("red", 11), class_name=f"error-{name}")),
        spacing="1",
        width="100%",
    )


def _edit_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Edit lead"),
            rx.vstack(
                rx.hstack(_field("Name", "name", max_length=LIMITS["name"]),
                          _field("Title", "title", max_length=LIMITS["title"]), width="100%"),
                rx.hstack(_field("Email", "email", max_length=LIMITS["email"]),
                          _field("Phone", "phone", max_length=LIMITS["phone"]), width="100%"),
                rx.hstack(_field("Company", "company", max_length=LIMITS["company"]),
                          _field("Employees", "company_size", inputmode="numeric"), width="100%"),
                rx.hstack(
                    _field("Deal value ($)", "deal_value", inputmode="decimal"),
                    rx.vstack(
                        rx.text("Source", size="2", weight="medium"),
                        rx.select.root(
                            rx.select.trigger(width="100%"),
                            rx.select.content(*[rx.select.item(s.label, value=s.value) for s in Source]),
                            value=S.edit.get("source", ""),
                            on_change=lambda v: S.set_edit_field("source", v),
                        ),
                        spacing="1", width="100%",
                    ),
                    width="100%",
                ),
                rx.vstack(
                    rx.text("Owner", size="2", weight="medium"),
                    rx.select.root(
                        rx.select.trigger(width="100%", placeholder="Unassigned"),
                        rx.select.content(rx.foreach(S.users, lambda u: rx.select.item(u.name, value=u.id.to_string()))),
                        value=S.edit.get("owner_id", ""),
                        on_change=lambda v: S.set_edit_field("owner_id", v),
                    ),
                    spacing="1", width="100%",
                ),
                rx.cond(S.edit_errors.contains("form"),
                        rx.callout(S.edit_errors["form"], icon="triangle-alert", color_scheme="red", size="1")),
                rx.hstack(
                    rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray")),
                    rx.button("Save", on_click=S.save_edit),
                    justify="end",
                    width="100%",
                ),
                spacing="3",
                width="100%",
            ),
            max_width="640px",
        ),
        open=S.edit_open,
        on_open_change=S.set_edit_open,
    )


def lead_detail_page() -> rx.Component:
    found = rx.cond(
        S.missing != "",
        rx.callout(S.missing, icon="search-x", color_scheme="gray"),
        rx.grid(
            rx.vstack(_summary(), _follow_ups(), _next_action(), _log_form(), _timeline(), spacing="4", width="100%"),
            rx.vstack(_risk_panel(), _breakdown(), _stage_mover(), _contact(), spacing="4", width="100%"),
            columns=rx.breakpoints(initial="minmax(0, 1fr)", md="minmax(0, 2fr) minmax(280px, 1fr)"),
            gap="1.25em",
            width="100%",
        ),
    )
    # Until the lead has arrived: placeholders (its defaults would draw an empty, nameless lead).
    body = rx.cond(S.loaded, found, loading_rows(5, row_height="96px"))
    return page_frame(
        rx.cond(S.lead.name != "", S.lead.name, "Lead"),
        rx.link(rx.hstack(rx.icon("arrow-left", size=14), rx.text("All leads")), href="/leads", size="2"),
        body,
        _edit_dialog(),
    )


