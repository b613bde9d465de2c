"""Search everywhere (Ctrl/Cmd-K), "/" to the page's own search, and "?" for the list of shortcuts.

The keys are installed once per tab, the way the "n" of "+ Lead" is (components/quick_add.py): each
clicks a button of the sidebar, so the key and the mouse take the same path. Ctrl/Cmd-K works even
while typing (it is not a character anyone types); "/" and "?" only when the user is not typing and no
dialog is open. body[data-shortcuts="ready"] tells tests the keys are live.
"""

from __future__ import annotations

import reflex as rx

from crm_app.services.search import CompanyHit, LeadHit
from crm_app.state.search import SearchState as S
from crm_app.state.search import ShortcutsState

SEARCH_BUTTON_ID = "global-search-open"
SHORTCUTS_BUTTON_ID = "shortcuts-open"
# What "/" focuses: the page's own search box (a page marks it with class "page-search"; otherwise the
# first input whose placeholder starts with "Search").
PAGE_SEARCH = ".page-search input, input.page-search, main input[placeholder^='Search'], input[placeholder^='Search']"
SHORTCUTS_JS = f"""
if (!window.__crmShortcuts) {{
  window.__crmShortcuts = true;
  const typing = (target) => target instanceof Element && (target.isContentEditable || target.closest(
      'input, textarea, select, [contenteditable], [role=dialog], [role=listbox], [role=menu], [role=combobox]'));
  const click = (id) => {{ const b = document.getElementById(id); if (b) b.click(); return !!b; }};
  document.addEventListener('keydown', (event) => {{
    if (event.defaultPrevented || event.repeat) return;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (event.key === 'k' || event.key === 'K')) {{
      if (click('{SEARCH_BUTTON_ID}')) event.preventDefault();
      return;
    }}
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === '/') {{
      const box = document.querySelector("{PAGE_SEARCH}");
      event.preventDefault();
      if (box) {{ box.focus(); box.select && box.select(); }} else click('{SEARCH_BUTTON_ID}');
    }} else if (event.key === '?') {{
      if (click('{SHORTCUTS_BUTTON_ID}')) event.preventDefault();
    }}
  }});
}}
document.body.dataset.shortcuts = 'ready';
"""

SHORTCUTS = [
    ("Ctrl K  /  \u2318 K", "Search leads, companies and emails everywhere"),
    ("/", "Go to this page's search box"),
    ("N", "Add a lead"),
    ("?", "Show this list"),
    ("\u2191 \u2193  Enter", "In search: move through the results, open one"),
    ("Space, arrows, Space", "On the board: lift a focused card, move it, drop it"),
    ("Esc", "Close a dialog, cancel a drag"),
]


def _kbd(text: str) -> rx.Component:
    return rx.el.kbd(text, style={"font_size": "11px", "padding": "0 0.4em", "border_radius": "4px",
                                  "border": f"1px solid {rx.color('gray', 7)}", "white_space": "nowrap"})


def search_button() -> rx.Component:
    """The sidebar's search entry (what Ctrl/Cmd-K clicks), with the keys installed on mount."""
    return rx.button(
        rx.icon("search", size=16), "Search",
        rx.el.kbd("Ctrl K", aria_hidden="true", style={"margin_left": "auto", "font_size": "11px", "opacity": "0.8"}),
        id=SEARCH_BUTTON_ID,
        on_click=S.open_search,
        # A new page starts with the search closed (its state outlives the page it was opened on).
        on_mount=[rx.call_script(SHORTCUTS_JS), S.set_search_open(False)],
        variant="soft",
        color_scheme="gray",
        width="100%",
        size="2",
        title="Search everywhere (Ctrl/Cmd-K)",
        aria_label="Search everywhere",
        margin_bottom="0.5em",
    )


def _lead_hit(hit: LeadHit, index) -> rx.Component:
    active = S.active == index
    return rx.el.button(
        rx.hstack(
            rx.vstack(
                rx.text(hit.name, size="2", weight="medium", class_name="hit-name"),
                rx.text(hit.company, rx.cond(hit.email != "", " \u00b7 " + hit.email, ""), size="1",
                        color=rx.color("gray", 10), class_name="hit-detail"),
                spacing="0",
                align="start",
                min_width="0",
            ),
            rx.spacer(),
            rx.vstack(
                rx.badge(hit.stage, variant="soft", color_scheme="gray", size="1"),
                rx.text(hit.owner, size="1", color=rx.color("gray", 10)),
                spacing="1",
                align="end",
            ),
            width="100%",
            align="center",
        ),
        on_click=S.open_lead(hit.id),
        type="button",
        class_name="search-hit",
        data_lead_id=hit.id,
        data_matched=hit.matched,
        data_active=rx.cond(active, "true", "false"),
        style={"all": "unset", "box_sizing": "border-box", "display": "block", "width": "100%",
               "cursor": "pointer", "padding": "8px 10px", "border_radius": "8px",
               "background": rx.cond(active, rx.color("accent", 3), "transparent"),
               "&:hover, &:focus-visible": {"background": rx.color("accent", 3)}},
    )


def _company_hit(hit: CompanyHit) -> rx.Component:
    return rx.el.button(
        rx.hstack(
            rx.icon("building-2", size=14, color=rx.color("gray", 10)),
            rx.text(hit.name, size="2", class_name="company-name"),
            rx.spacer(),
            rx.text(hit.leads, " lead", rx.cond(hit.leads == 1, "", "s"), size="1", color=rx.color("gray", 10)),
            width="100%",
            align="center",
        ),
        on_click=S.open_company(hit.name),
        type="button",
        class_name="search-company",
        style={"all": "unset", "box_sizing": "border-box", "display": "block", "width": "100%",
               "cursor": "pointer", "padding": "6px 10px", "border_radius": "8px",
               "&:hover, &:focus-visible": {"background": rx.color("accent", 3)}},
    )


def _group(title: str, body: rx.Component) -> rx.Component:
    return rx.vstack(rx.text(title, size="1", weight="bold", color=rx.color("gray", 10), padding_left="10px"),
                     body, spacing="1", width="100%")


def search_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Search", class_name="sr-only", style={"position": "absolute", "width": "1px",
                                                                   "height": "1px", "overflow": "hidden"}),
            rx.input(
                rx.input.slot(rx.icon("search", size=16)),
                placeholder="Search leads, companies and emails",
                value=S.query,
                on_change=S.set_query.debounce(250),
                on_key_down=S.key_down,
                auto_focus=True,
                max_length=200,
                size="3",
                id="global-search-input",
                aria_label="Search leads, companies and emails",
            ),
            rx.cond(S.hint != "", rx.text(S.hint, size="2", color=rx.color("gray", 10), padding="0.75em 0.25em",
                                          class_name="search-hint")),
            rx.scroll_area(
                rx.vstack(
                    rx.cond(S.lead_hits.length() > 0, _group("Leads", rx.vstack(
                        rx.foreach(S.lead_hits, _lead_hit), spacing="0", width="100%"))),
                    rx.cond(S.more_leads, rx.button("More results", on_click=S.more, variant="ghost", size="1",
                                                    class_name="search-more", margin_left="10px")),
                    rx.cond(S.company_hits.length() > 0, _group("Companies", rx.vstack(
                        rx.foreach(S.company_hits, _company_hit), spacing="0", width="100%"))),
                    spacing="3",
                    width="100%",
                    padding_top="0.75em",
                ),
                type="auto",
                scrollbars="vertical",
                max_height="60vh",
            ),
            rx.hstack(
                rx.text("\u2191\u2193 to move, Enter to open, Esc to close", size="1", color=rx.color("gray", 9)),
                justify="end",
                width="100%",
                padding_top="0.5em",
            ),
            max_width="600px",
            class_name="global-search",
            data_searched=S.searched,
        ),
        open=S.search_open,
        on_open_change=S.set_search_open,
    )


def shortcuts_button() -> rx.Component:
    return rx.link("Shortcuts (?)", id=SHORTCUTS_BUTTON_ID, on_click=ShortcutsState.set_shortcuts_open(True),
                   size="1", cursor="pointer", class_name="shortcuts-link")


def shortcuts_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Keyboard shortcuts"),
            rx.table.root(
                rx.table.body(*[
                    rx.table.row(rx.table.cell(_kbd(keys), width="170px"), rx.table.cell(rx.text(what, size="2")))
                    for keys, what in SHORTCUTS
                ]),
                size="1",
                width="100%",
            ),
            rx.hstack(rx.dialog.close(rx.button("Close", variant="soft", color_scheme="gray")), justify="end",
                      width="100%", padding_top="1em"),
            max_width="520px",
            class_name="shortcuts-list",
        ),
        open=ShortcutsState.shortcuts_open,
        on_open_change=ShortcutsState.set_shortcuts_open,
    )
