"""The pipeline board: a drag-and-drop kanban of deals by stage, with stuck deals flagged."""

from __future__ import annotations

import reflex as rx

from crm_app.components.badges import score_badge
from crm_app.components.kanban_dnd import dnd_board, dnd_card, dnd_column
from crm_app.components.controls import choice
from crm_app.components.live import live_ticker
from crm_app.components.layout import page_frame
from crm_app.components.loading import loading_columns
from crm_app.components.next_step import next_step_dialog
from crm_app.domain import Source, Stage
from crm_app.services.pipeline import MAX_CARDS, DealCard
from crm_app.state.pipeline import ALL, STRIP_PREFIX
from crm_app.state.pipeline import PipelineState as S

COLUMN_WIDTH = "264px"
# One colour per stage for the column's top edge: cool to warm along the funnel, then the outcome.
STAGE_COLORS = {
    "new": "sky", "contacted": "cyan", "qualified": "indigo", "meeting": "violet",
    "proposal": "purple", "negotiation": "amber", "won": "grass", "lost": "gray",
}
CARD_SHADOW = "0 1px 2px rgba(16, 24, 40, 0.06), 0 1px 3px rgba(16, 24, 40, 0.08)"


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.input(
            rx.input.slot(rx.icon("search", size=16)),
            placeholder="Search deals",
            value=S.search,
            on_change=S.set_search.debounce(300),
            width="220px",
            max_length=200,
            aria_label="Search deals",
        ),
        rx.select.root(
            rx.select.trigger(width="170px", aria_label="Owner"),
            rx.select.content(rx.foreach(S.owner_options, lambda o: rx.select.item(o[1], value=o[0]))),
            value=S.owner,
            on_change=S.set_owner,
        ),
        choice(S.tier, S.set_tier, [(ALL, "All tiers"), ("hot", "Hot"), ("warm", "Warm"), ("cold", "Cold")],
                "Tier", "120px"),
        choice(S.source, S.set_source, [(ALL, "All sources"), *[(s.value, s.label) for s in Source]],
                "Source", "150px"),
        choice(S.risk, S.set_risk, [(ALL, "Any risk"), ("any", "At risk"), ("high", "High risk")], "Risk",
               "130px"),
        rx.el.label(
            rx.hstack(
                rx.switch(checked=S.only_stagnating, on_change=S.set_only_stagnating, size="1",
                          color_scheme="red", aria_label="Only stuck deals"),
                rx.text("Only stuck", size="2"),
                align="center",
                spacing="2",
            ),
            cursor="pointer",
        ),
        rx.cond(S.filtered, rx.button("Clear", variant="ghost", size="1", on_click=S.clear_filters)),
        rx.spacer(),
        rx.text(S.open_summary, size="2", color=rx.color("gray", 10), class_name="board-summary",
                white_space="nowrap"),
        width="100%",
        align="center",
        spacing="3",
        wrap="wrap",
        padding_bottom="1em",
    )


def _error_callout() -> rx.Component:
    return rx.cond(
        S.move_error != "",
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert", size=16)),
            rx.callout.text(S.move_error),
            rx.icon_button(rx.icon("x", size=14), variant="ghost", color_scheme="red", size="1",
                           on_click=S.dismiss_error, aria_label="Dismiss", margin_left="auto"),
            color_scheme="red",
            role="alert",
            class_name="move-error",
            margin_bottom="1em",
            display="flex",
            align_items="center",
        ),
    )


def _card_menu(card: DealCard) -> rx.Component:
    # The wrapper keeps clicks on the menu (whose items render in a portal but still bubble
    # through React) from reaching the card, which would open the lead.
    return rx.box(
        rx.dropdown_menu.root(
            rx.dropdown_menu.trigger(
                rx.icon_button(rx.icon("ellipsis", size=14), variant="ghost", color_scheme="gray", size="1",
                               aria_label="Actions for " + card.name, class_name="card-menu"),
            ),
            rx.dropdown_menu.content(
                rx.text("Move to", size="1", color=rx.color("gray", 10), weight="medium", padding="4px 8px"),
                *[
                    rx.dropdown_menu.item(
                        rx.hstack(
                            rx.box(width="8px", height="8px", border_radius="50%",
                                   background=rx.color(STAGE_COLORS[s.value], 9)),
                            rx.text(s.label),
                            align="center",
                            spacing="2",
                        ),
                        disabled=card.stage == s.value,
                        on_select=S.move_from_menu(card.id, s.value),
                        class_name="move-to-" + s.value,
                    )
                    for s in Stage
                ],
                rx.dropdown_menu.separator(),
                rx.text("Log", size="1", color=rx.color("gray", 10), weight="medium", padding="4px 8px"),
                *[
                    rx.dropdown_menu.item(
                        rx.hstack(rx.icon(icon, size=14), rx.text(label), align="center", spacing="2"),
                        on_select=S.log_from_card(card.id, kind),
                        class_name="log-" + kind,
                    )
                    for kind, label, icon in (("call", "Call", "phone"), ("email_sent", "Email sent", "send"),
                                              ("meeting", "Meeting", "users"))
                ],
                rx.dropdown_menu.separator(),
                rx.dropdown_menu.item(
                    rx.hstack(rx.icon("external-link", size=14), rx.text("Open lead"), align="center", spacing="2"),
                    on_select=rx.redirect("/leads/" + card.id.to_string()),
                ),
                size="1",
                min_width="180px",
            ),
        ),
        on_click=rx.stop_propagation,
        margin_top="-4px",
        margin_right="-6px",
    )


def _stuck_or_age(card: DealCard) -> rx.Component:
    return rx.cond(
        card.stagnating,
        rx.badge(
            rx.icon("flame", size=12),
            "Stuck " + card.days_in_stage.to_string() + "d",
            color_scheme="red",
            variant="soft",
            radius="full",
            size="1",
            class_name="stuck-flag",
            title="Longer in this stage than the stage allows",
        ),
        rx.text(
            rx.cond((card.stage == "won") | (card.stage == "lost"), "Closed ", ""),
            card.days_in_stage.to_string(),
            rx.cond((card.stage == "won") | (card.stage == "lost"), "d ago", "d in stage"),
            size="1", color=rx.color("gray", 9), class_name="days-in-stage", white_space="nowrap",
        ),
    )


def _risk_flag(card: DealCard) -> rx.Component:
    """Medium or High deal risk (scoring/risk.py); its weightiest reason on hover."""
    return rx.cond(
        (card.risk_level == "high") | (card.risk_level == "medium"),
        rx.tooltip(
            rx.badge(
                rx.icon("triangle-alert", size=11),
                rx.cond(card.risk_level == "high", "At risk", "Risk"),
                color_scheme=rx.cond(card.risk_level == "high", "red", "orange"),
                variant=rx.cond(card.risk_level == "high", "solid", "soft"),
                radius="full",
                size="1",
                class_name="risk-flag",
            ),
            content=card.risk_reason,
        ),
    )


def _activity_status(card: DealCard) -> rx.Component:
    """The deal's next step as Pipedrive shows it: overdue red, planned green, none grey."""
    return rx.tooltip(
        rx.center(
            rx.icon(rx.match(card.activity, ("overdue", "calendar-x"), ("planned", "calendar-check"), "calendar"),
                    size=12, color="white"),
            width="18px", height="18px", border_radius="50%", flex_shrink="0",
            background=rx.match(card.activity, ("overdue", rx.color("red", 9)), ("planned", rx.color("grass", 9)),
                                rx.color("gray", 7)),
            class_name="activity-status",
            custom_attrs={"data-activity": card.activity},
        ),
        content=card.activity_label,
    )


def _card(card: DealCard, index) -> rx.Component:
    lead_id = card.id.to_string()
    return dnd_card(
        rx.vstack(
            rx.hstack(
                rx.text(card.name, size="2", weight="medium", class_name="deal-name",
                        overflow="hidden", text_overflow="ellipsis", white_space="nowrap", flex="1", min_width="0"),
                _card_menu(card),
                width="100%",
                align="start",
                spacing="1",
            ),
            rx.text(card.company, size="1", color=rx.color("gray", 10), overflow="hidden",
                    text_overflow="ellipsis", white_space="nowrap", width="100%", margin_top="-2px"),
            rx.hstack(
                rx.text(card.value_label, size="2", weight="bold", class_name="deal-value",
                        font_variant_numeric="tabular-nums"),
                rx.spacer(),
                _risk_flag(card),
                score_badge(card.score, card.tier, size="1"),
                width="100%",
                align="center",
                padding_top="4px",
            ),
            rx.hstack(
                rx.hstack(
                    rx.avatar(fallback=card.owner_initials, size="1", radius="full", variant="soft",
                              color_scheme="gray"),
                    rx.text(card.owner, size="1", color=rx.color("gray", 11), class_name="deal-owner",
                            overflow="hidden", text_overflow="ellipsis", white_space="nowrap"),
                    align="center",
                    spacing="2",
                    min_width="0",
                    flex="1",
                ),
                _activity_status(card),
                _stuck_or_age(card),
                width="100%",
                align="center",
                spacing="2",
            ),
            spacing="1",
            width="100%",
        ),
        card_id=lead_id,
        index=index,
        key=lead_id,
        on_click=rx.redirect("/leads/" + lead_id),
        class_name="deal-card",
        aria_label=card.name + ", " + card.value_label + ", score " + card.score.to_string(),
        data_lead_id=lead_id,
        data_stagnating=rx.cond(card.stagnating, "true", "false"),
        data_risk=card.risk_level,
        # The deal just moved here (services/pipeline.deal_card keeps it in the loaded cards).
        data_highlighted=rx.cond(S.highlight_id == card.id, "true", "false"),
        data_activity=card.activity,
        # Shown where it was dropped, not written yet (state/pipeline._write_move).
        data_saving=rx.cond(card.saving, "true", "false"),
        padding="10px 12px",
        margin_bottom="8px",
        background="white",
        border=f"1px solid {rx.color('gray', 4)}",
        border_left=rx.cond(card.stagnating, f"3px solid {rx.color('red', 9)}",
                            f"1px solid {rx.color('gray', 4)}"),
        border_radius="8px",
        box_shadow=CARD_SHADOW,
        cursor="grab",
        _hover={"box_shadow": "0 4px 12px rgba(16, 24, 40, 0.12)", "border_color": rx.color("gray", 6)},
        # Lifted: a deeper shadow so the card reads as picked up.
        style={"&[data-dragging='true']": {"box_shadow": "0 12px 28px rgba(16, 24, 40, 0.22)",
                                             "cursor": "grabbing"},
               "&[data-highlighted='true']": {"outline": f"2px solid {rx.color('accent', 8)}",
                                              "background": rx.color("accent", 2)},
               "&[data-saving='true']": {"opacity": "0.8"}},
    )


def _column(i: int, stage: Stage) -> rx.Component:
    column = getattr(S, f"column_{stage.value}")
    header = rx.vstack(
        rx.hstack(
            rx.text(stage.label, size="2", weight="bold", class_name="column-title"),
            rx.badge(column.count, variant="soft", color_scheme="gray", radius="full", size="1",
                     class_name="column-count"),
            rx.spacer(),
            rx.cond(
                column.stagnating > 0,
                rx.tooltip(
                    rx.badge(rx.icon("flame", size=11), column.stagnating, color_scheme="red", variant="soft",
                             radius="full", size="1", class_name="column-stuck"),
                    content="Deals stuck in this stage",
                ),
            ),
            align="center",
            spacing="2",
            width="100%",
        ),
        rx.hstack(
            rx.text(column.value_label, size="1", color=rx.color("gray", 10), class_name="column-value",
                    font_variant_numeric="tabular-nums"),
            rx.cond(
                column.weighted_label != "",
                rx.tooltip(
                    rx.text("· ", column.weighted_label, " weighted", size="1", color=rx.color("gray", 11),
                            class_name="column-weighted", font_variant_numeric="tabular-nums"),
                    content="Value x win probability: the model's when a model scores the team, else the "
                            "stage's win rate from the team's closed deals",
                ),
            ),
            spacing="1",
        ),
        spacing="0",
        padding="10px 12px 8px",
        border_top=f"3px solid {rx.color(STAGE_COLORS[stage.value], 9)}",
        border_radius="10px 10px 0 0",
        width="100%",
    )
    remaining = column.count - column.cards.length()
    footer = rx.cond(
        remaining > 0,
        rx.cond(
            column.cards.length() < MAX_CARDS,
            rx.button(
                rx.icon("chevrons-down", size=14),
                "Load more (" + remaining.to_string() + ")",
                variant="ghost", size="1", color_scheme="gray", width="100%",
                on_click=S.load_more(stage.value), class_name="load-more",
            ),
            rx.text("Showing the top " + str(MAX_CARDS) + ". Filter to narrow it down.", size="1",
                    color=rx.color("gray", 10), text_align="center", width="100%"),
        ),
    )
    return rx.box(
        header,
        dnd_column(
            rx.foreach(column.cards, _card),
            rx.cond(
                column.count == 0,
                rx.center(
                    rx.text(rx.cond(S.filtered, "No deals match", "No deals here"), size="1",
                            color=rx.color("gray", 9)),
                    class_name="column-empty",
                    height="96px",
                    border=f"1px dashed {rx.color('gray', 6)}",
                    border_radius="8px",
                ),
            ),
            column_id=stage.value,
            min_height="120px",
            padding="0 8px",
            class_name="pipeline-column-cards",
            # While a card hovers over an empty column, its placeholder takes the empty note's place.
            style={"&[data-dragging-over='true'] .column-empty": {"display": "none"}},
        ),
        rx.box(footer, padding="0 8px 8px"),
        width=COLUMN_WIDTH,
        min_width=COLUMN_WIDTH,
        background=rx.color("gray", 2),
        border=f"1px solid {rx.color('gray', 4)}",
        border_radius="10px",
        class_name="pipeline-column",
        id=f"column-{stage.value}",
        data_stage=stage.value,
    )


def _strip_chip(i: int, stage: Stage) -> rx.Component:
    column = getattr(S, f"column_{stage.value}")
    return dnd_column(
        rx.box(width="8px", height="8px", border_radius="50%", background=rx.color(STAGE_COLORS[stage.value], 9),
               flex_shrink="0"),
        rx.text(stage.label, size="1", weight="medium", white_space="nowrap"),
        rx.text(column.count, size="1", color=rx.color("gray", 10), font_variant_numeric="tabular-nums"),
        column_id=STRIP_PREFIX + stage.value,
        show_placeholder=False,
        on_click=rx.call_script(f"document.getElementById('column-{stage.value}')"
                                ".scrollIntoView({behavior: 'smooth', inline: 'start', block: 'nearest'})"),
        title=f"Show {stage.label}, or drop a deal here to move it to {stage.label}",
        class_name="stage-chip",
        data_stage=stage.value,
        display="flex",
        align_items="center",
        gap="6px",
        padding="4px 10px",
        border=f"1px solid {rx.color('gray', 5)}",
        border_radius="999px",
        background="white",
        cursor="pointer",
        style={"&[data-dragging-over='true']": {"background": rx.color("accent", 4),
                                                "border_color": rx.color("accent", 8)}},
    )


def _stage_strip() -> rx.Component:
    """Every stage as a chip above the board. A click brings that column into view; a deal dropped on
    a chip moves to that stage. So all eight columns are reachable without dragging a deal to the
    board's edge, where auto-scroll could carry it one column too far."""
    return rx.hstack(
        rx.text("Jump or drop:", size="1", color=rx.color("gray", 10), white_space="nowrap"),
        *[_strip_chip(i, stage) for i, stage in enumerate(Stage)],
        spacing="2",
        wrap="wrap",
        align="center",
        padding_bottom="10px",
        class_name="stage-strip wide-only",
    )


def _phone_stage_picker() -> rx.Component:
    """A phone shows one column at a time: this select picks it."""
    return rx.select.root(
        rx.select.trigger(width="100%", aria_label="Stage shown", class_name="phone-stage-trigger"),
        rx.select.content(*[
            rx.select.item(stage.label + " (", getattr(S, f"column_{stage.value}").count.to_string(), ")",
                           value=stage.value)
            for i, stage in enumerate(Stage)
        ]),
        value=S.phone_stage,
        on_change=S.show_stage,
        size="3",
    )


def _board() -> rx.Component:
    return dnd_board(
        _stage_strip(),
        rx.box(_phone_stage_picker(), class_name="phone-only", padding_bottom="10px"),
        rx.box(
            *[_column(i, stage) for i, stage in enumerate(Stage)],
            class_name="pipeline-columns",
            display="flex",
            gap="12px",
            align_items="flex-start",
            overflow_x="auto",
            padding_bottom="16px",
            width="100%",
        ),
        on_move=S.move_card,
        class_name="pipeline-board",
        data_ready=rx.cond(S.ready, "true", "false"),
        data_phone_stage=S.phone_stage,
        width="100%",
    )


def pipeline_page() -> rx.Component:
    return page_frame(
        "Pipeline",
        "Drag a deal to move it. \"Stuck\": longer in its stage than the stage allows. \"At risk\": the deal may be "
        "slipping away (hover for why).",
        live_ticker(S.refresh_if_changed),
        next_step_dialog(),
        _toolbar(),
        _error_callout(),
        rx.cond(S.ready, _board(), loading_columns(4)),
    )
