"""The dashboard: what should I do right now? The action queue first, pipeline health beside it."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import score_badge
from crm_app.components.live import live_ticker
from crm_app.components.layout import page_frame
from crm_app.components.loading import loading_rows
from crm_app.components.next_step import next_step_panel
from crm_app.components.next_action import suggestion_line
from crm_app.services.pipeline_health import StageHealth
from crm_app.services.queue import SNOOZE_CHOICES, QueueItem
from crm_app.state.base import figure_var
from crm_app.state.dashboard import QUEUE_TOP, DashboardState

S = DashboardState


# Only a fresh signal says "call now" (services/queue.py); an older Hot lead reads "Hot".
_KIND_COLORS = (("fresh", "tomato"), ("overdue", "red"), ("hot", "crimson"), ("due", "amber"),
                ("risk", "orange"))


def _kind_badge(kind) -> rx.Component:
    return rx.badge(
        rx.match(kind, ("fresh", "Call now"), ("overdue", "Overdue"), ("hot", "Hot"), ("due", "Due today"),
                 ("risk", "At risk"), "Stuck"),
        color_scheme=rx.match(kind, *_KIND_COLORS, "gray"),
        class_name="queue-kind",
        variant="soft",
        radius="full",
        size="1",
    )


def _actions(item: QueueItem) -> rx.Component:
    """Log a call (the usual next step), done, snooze; the other kinds of log under "more"."""
    return rx.hstack(
        rx.button(rx.icon("phone", size=15), "Log call", size="2", variant="soft",
                  on_click=S.open_log(item.lead_id, "call"), class_name="log-call"),
        rx.tooltip(
            rx.icon_button(rx.icon("check", size=16), variant="soft", color_scheme="green", size="2",
                           on_click=S.mark_done(item.lead_id), aria_label="Mark done",
                           class_name="mark-done"),
            content=rx.cond((item.kind == "overdue") | (item.kind == "due"), "Mark the follow-up done",
                            "Done: hide until they engage again"),
        ),
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.icon_button(rx.icon("alarm-clock", size=16), size="2", variant="soft",
                               color_scheme="gray", aria_label="Snooze", class_name="snooze")
            ),
            rx.dropdown_menu.content(
                rx.text("Snooze until", size="1", color=rx.color("gray", 10), padding="0.25em 0.75em"),
                *[
                    rx.dropdown_menu.item(label, on_select=S.snooze(item.lead_id, choice))
                    for choice, label in SNOOZE_CHOICES.items()
                ],
                align="end",
            ),
        ),
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.icon_button(rx.icon("ellipsis", size=16), size="2", variant="soft",
                               color_scheme="gray", aria_label="More actions", class_name="more")
            ),
            rx.dropdown_menu.content(
                rx.dropdown_menu.item(rx.icon("mail", size=14), "Log an email",
                                      on_select=S.open_log(item.lead_id, "email")),
                rx.dropdown_menu.item(rx.icon("calendar", size=14), "Log a meeting",
                                      on_select=S.open_log(item.lead_id, "meeting")),
                rx.dropdown_menu.item(rx.icon("notebook-pen", size=14), "Add a note",
                                      on_select=S.open_log(item.lead_id, "note")),
                rx.dropdown_menu.separator(),
                rx.dropdown_menu.item(rx.icon("external-link", size=14), "Open lead",
                                      on_select=rx.redirect("/leads/" + item.lead_id.to_string())),
                align="end",
            ),
        ),
        spacing="2",
        align="center",
        flex_shrink="0",
    )


def _queue_item(item: QueueItem) -> rx.Component:
    return rx.box(
        rx.hstack(
            score_badge(item.score, item.tier, size="3"),
            rx.vstack(
                rx.hstack(
                    rx.link(item.name, href="/leads/" + item.lead_id.to_string(), weight="bold",
                            size="3", color=rx.color("gray", 12), class_name="queue-lead"),
                    rx.text(item.company, size="2", color=rx.color("gray", 10)),
                    _kind_badge(item.kind),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                rx.text(item.headline, size="2", weight="medium", color=rx.color("gray", 12),
                        class_name="queue-headline"),
                rx.foreach(
                    item.secondary,
                    lambda reason: rx.text("Also: ", reason, size="1", color=rx.color("gray", 10)),
                ),
                rx.cond(item.suggestion != "",
                        suggestion_line(item.suggestion, item.suggestion_why, item.suggestion_basis)),
                rx.text(item.stage, " · ", item.value_label, " · ", item.owner,
                        size="1", color=rx.color("gray", 9)),
                rx.cond(
                    S.error_lead_id == item.lead_id,
                    rx.callout(S.error_message, icon="triangle-alert", color_scheme="red", size="1",
                               margin_top="0.25em"),
                ),
                spacing="1",
                min_width="0",
                flex="1",
            ),
            _actions(item),
            align="start",
            spacing="3",
            width="100%",
        ),
        class_name="queue-item",
        key=item.lead_id,
        data_lead_id=item.lead_id,
        data_kind=item.kind,
        padding="0.9em 1em",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        _hover={"background": rx.color("gray", 2)},
    )


def _empty_queue() -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.center(rx.icon("party-popper", size=24, color=rx.color("green", 10)),
                      width="48px", height="48px", border_radius="50%", background=rx.color("green", 3)),
            rx.text("Nothing urgent. Nice work.", size="4", weight="bold"),
            rx.text(rx.cond(S.queue_group == "all",
                            "No new signal, no Hot lead waiting, no follow-up due, "
                            "no deal at risk or stuck.",
                            "Nothing in this group. The other groups are above."),
                    size="2", color=rx.color("gray", 10), text_align="center"),
            align="center",
            spacing="2",
        ),
        padding="4em 2em",
        class_name="queue-empty",
    )


def _section_title(title: str, caption) -> rx.Component:
    return rx.hstack(
        rx.heading(title, size="4"),
        rx.spacer(),
        rx.text(caption, size="2", color=rx.color("gray", 10)),
        align="baseline",
        width="100%",
        padding="1em 1em 0.75em 1em",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
    )


def _group_button(label, count, value, selected) -> rx.Component:
    return rx.button(
        label,
        rx.text(count, as_="span", weight="bold", font_variant_numeric="tabular-nums",
                class_name="group-count"),
        size="1",
        radius="full",
        variant=rx.cond(selected, "solid", "soft"),
        color_scheme=rx.cond(selected, "indigo", "gray"),
        on_click=S.show_group(value),
        class_name="queue-group",
        data_group=value,
        aria_pressed=rx.cond(selected, "true", "false"),
    )


def _group_bar() -> rx.Component:
    """Every group with how many leads wait in it; a click shows that group alone."""
    return rx.hstack(
        _group_button("All", S.queue_total_label, "all", S.queue_group == "all"),
        rx.foreach(S.groups, lambda g: rx.cond(
            g.count > 0, _group_button(g.label, g.count_label, g.kind, S.queue_group == g.kind))),
        spacing="2",
        wrap="wrap",
        padding="0.75em 1em",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        class_name="queue-groups",
    )


def _pager() -> rx.Component:
    return rx.cond(
        S.page_label != "",
        rx.hstack(
            rx.button(rx.icon("chevron-left", size=14), "Previous", size="1", variant="soft",
                      color_scheme="gray", disabled=~S.has_previous_page, on_click=S.previous_page,
                      class_name="queue-previous"),
            rx.text(S.page_label, size="1", color=rx.color("gray", 10), class_name="queue-page-label"),
            rx.button("Next", rx.icon("chevron-right", size=14), size="1", variant="soft",
                      color_scheme="gray", disabled=~S.has_next_page, on_click=S.next_page,
                      class_name="queue-next"),
            justify="between",
            align="center",
            width="100%",
            padding="0.75em 1em",
        ),
    )


def _queue() -> rx.Component:
    return rx.card(
        _section_title("Do next", S.queue_caption),
        rx.box(next_step_panel("today"), padding="0 1em"),
        rx.cond(S.queue_total > 0, _group_bar()),
        rx.cond(
            S.items.length() > 0,
            rx.box(rx.foreach(S.items, _queue_item), class_name="queue"),
            _empty_queue(),
        ),
        _pager(),
        id=QUEUE_TOP,
        padding="0",
        width="100%",
        overflow="hidden",
    )


def _stat(label: str, value, detail, color: str, icon: str) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.center(rx.icon(icon, size=18, color=rx.color(color, 11)), width="36px", height="36px",
                      border_radius="8px", background=rx.color(color, 3), flex_shrink="0"),
            rx.vstack(
                rx.text(label, size="1", color=rx.color("gray", 10), weight="medium"),
                rx.text(value, size="5", weight="bold", font_variant_numeric="tabular-nums",
                        line_height="1.1"),
                rx.text(detail, size="1", color=rx.color("gray", 9)),
                spacing="0",
            ),
            align="center",
            spacing="3",
        ),
        class_name="stat-card",
        width="100%",
    )


def _stats() -> rx.Component:
    return rx.grid(
        _stat("Open pipeline", S.open_value_label,
              S.open_count.to_string() + " open deals · " + S.weighted_value_label + " weighted",
              "indigo", "briefcase"),
        _stat("Hot", S.hot, "Most likely to buy", "tomato", "flame"),
        _stat("Warm", S.warm, "Nurture", "amber", "sun"),
        _stat("Cold", S.cold, "Leave to marketing", "indigo", "snowflake"),
        _stat("Stuck deals", S.stuck, "Past their stage limit", "gray", "hourglass"),
        columns=rx.breakpoints(initial="2", sm="3", md="5"),
        spacing="3",
        width="100%",
        class_name="health-stats",
    )


def _target_banner() -> rx.Component:
    return rx.cond(
        S.target_warning != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("target")),
            rx.callout.text(rx.text.strong("Below your target. "), S.target_warning, " ",
                            rx.link("See the forecast", href="/forecast")),
            color_scheme="amber",
            class_name="target-warning",
            width="100%",
        ),
    )


def _drying_banner() -> rx.Component:
    return rx.cond(
        S.drying_up,
        rx.callout.root(
            rx.callout.icon(rx.icon("trending-down")),
            rx.callout.text(rx.text.strong("The pipeline is drying up. "), S.drying_message),
            color_scheme="amber",
            class_name="drying-up",
            width="100%",
        ),
    )


def _stage_row(stage: StageHealth) -> rx.Component:
    return rx.hstack(
        rx.text(stage.label, size="2", weight="medium", width="96px"),
        rx.text(stage.count, size="2", weight="bold", font_variant_numeric="tabular-nums",
                width="32px", text_align="right"),
        rx.text(stage.value_label, size="2", color=rx.color("gray", 11),
                font_variant_numeric="tabular-nums", flex="1", text_align="right"),
        rx.tooltip(
            rx.text(stage.weighted_label, size="1", color=rx.color("gray", 10), width="72px", text_align="right",
                    font_variant_numeric="tabular-nums", class_name="stage-weighted"),
            content="Weighted: value x win probability",
        ),
        rx.box(
            rx.cond(stage.stuck > 0,
                    rx.badge(stage.stuck.to_string() + " stuck", color_scheme="orange", variant="soft",
                             size="1", radius="full")),
            width="72px",
            text_align="right",
        ),
        align="center",
        width="100%",
        padding="0.45em 0",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
        class_name="stage-row",
    )


def _health() -> rx.Component:
    return rx.vstack(
        rx.card(
            rx.heading("Open deals by stage", size="3", padding_bottom="0.5em"),
            rx.foreach(S.stages, _stage_row),
            width="100%",
        ),
        rx.card(
            rx.vstack(
                rx.heading("New leads per week", size="3"),
                rx.cond(
                    S.baseline > 0,
                    rx.hstack(
                        rx.box(width="16px", border_top="2px dashed #ffa01c"),
                        rx.text("usual pace: ", S.baseline_label, " a week (the 4 weeks before last)",
                                size="1", color=rx.color("gray", 10)),
                        align="center",
                        spacing="2",
                    ),
                ),
                spacing="1",
            ),
            rx.cond(
                S.has_new_leads,
                rx.plotly(data=figure_var(S.new_leads_chart), config={"displayModeBar": False}, width="100%",
                          height="220px", use_resize_handler=True),
                rx.center(rx.text("No new leads in the last 8 weeks.", size="2", color=rx.color("gray", 10)),
                          padding="2.5em 0", class_name="no-new-leads"),
            ),
            width="100%",
        ),
        spacing="3",
        width="100%",
    )


def _log_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(S.log_title, " · ", S.log_lead_name),
            rx.dialog.description("Logged on the lead; its score and the queue update at once.",
                                  size="2", color=rx.color("gray", 10), margin_bottom="1em"),
            rx.vstack(
                rx.segmented_control.root(
                    rx.segmented_control.item("Call", value="call"),
                    rx.segmented_control.item("Email", value="email"),
                    rx.segmented_control.item("Meeting", value="meeting"),
                    rx.segmented_control.item("Note", value="note"),
                    value=S.log_kind,
                    on_change=S.set_log_kind,
                    width="100%",
                ),
                rx.text_area(
                    placeholder="What happened? e.g. Talked pricing, sending a proposal",
                    value=S.log_body,
                    on_change=S.set_log_body,
                    rows="4",
                    width="100%",
                    auto_focus=True,
                    name="log_body",
                ),
                rx.hstack(
                    rx.text("Follow up", size="2", weight="medium", white_space="nowrap"),
                    rx.select.root(
                        rx.select.trigger(width="140px", aria_label="Follow up in"),
                        rx.select.content(
                            rx.select.item("No follow-up", value="none"),
                            rx.select.item("Tomorrow", value="1"),
                            rx.select.item("In 2 days", value="2"),
                            rx.select.item("In 3 days", value="3"),
                            rx.select.item("In a week", value="7"),
                            rx.select.item("In 2 weeks", value="14"),
                        ),
                        value=S.log_follow_up_days,
                        on_change=S.set_log_follow_up_days,
                    ),
                    rx.cond(
                        S.log_follow_up_days != "none",
                        rx.input(placeholder="To do then, e.g. send the proposal",
                                 value=S.log_follow_up_note, on_change=S.set_log_follow_up_note,
                                 max_length=500, flex="1"),
                    ),
                    align="center",
                    spacing="2",
                    width="100%",
                ),
                rx.cond(S.log_error != "",
                        rx.callout(S.log_error, icon="triangle-alert", color_scheme="red", size="1",
                                   width="100%", class_name="log-error")),
                rx.hstack(
                    rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray")),
                    rx.button("Save", on_click=S.save_log, loading=S.log_saving, class_name="save-log"),
                    justify="end",
                    spacing="2",
                    width="100%",
                    padding_top="0.5em",
                ),
                spacing="3",
                width="100%",
            ),
            max_width="520px",
        ),
        open=S.log_open,
        on_open_change=S.set_log_open,
    )


def _owner_filter() -> rx.Component:
    return rx.cond(
        S.viewer_is_manager,
        rx.hstack(
            rx.text("Owner", size="2", color=rx.color("gray", 10)),
            rx.select.root(
                rx.select.trigger(width="180px", aria_label="Owner"),
                rx.select.content(
                    rx.foreach(S.owner_options, lambda o: rx.select.item(o[1], value=o[0]))
                ),
                value=S.owner_filter,
                on_change=S.set_owner_filter,
            ),
            align="center",
            spacing="2",
        ),
    )


def dashboard_page() -> rx.Component:
    return page_frame(
        "Today",
        "What to do right now: new requests first, then follow-ups you promised, Hot leads, "
        "deals at risk or stuck.",
        live_ticker(S.refresh_if_changed),
        rx.cond(
            S.loaded,
            rx.vstack(
                _target_banner(),
                _drying_banner(),
                _stats(),
                rx.grid(
                    _queue(),
                    _health(),
                    columns=rx.breakpoints(initial="minmax(0, 1fr)", lg="minmax(0, 1fr) 360px"),
                    spacing="4",
                    width="100%",
                    align="start",
                ),
                spacing="4",
                width="100%",
            ),
            loading_rows(6, stats=5, row_height="72px"),
        ),
        _log_dialog(),
        actions=_owner_filter(),
    )
