"""The bell: the signed-in user's unread count and newest notifications, refreshed when the database
announces one for them (crm_app/live.py, key `n<user id>`), and a browser notification for each new
one when the user allowed them."""

from __future__ import annotations

import json
import time

import reflex as rx

from crm_app import live
from crm_app.services.notifications import NotificationLine, bell, live_key, mark_read
from crm_app.state.base import AppState, now_utc, whole_number

# Asks the browser to show a notification (only when the user allowed them); a click opens the lead.
_SHOW = """(() => {{
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  const shown = new Notification({title}, {{body: {body}, tag: {tag}}});
  shown.onclick = () => {{ window.focus(); window.location.assign({href}); }};
}})()"""
_ASK = "('Notification' in window) && Notification.requestPermission()"


class NotificationState(AppState):
    unread: int = 0
    lines: list[NotificationLine] = []
    loaded: bool = False
    _read_at: float = 0.0
    _newest_id: int = 0

    async def _reload(self) -> list[NotificationLine]:
        """Read the bell; returns the unread notifications that arrived since the last read."""
        user = await self._current_user()
        if user is None:
            return []
        self._read_at, now = time.time(), now_utc()
        seen = await self._db(lambda s: bell(s, user_id=user.id, now=now))
        fresh = [line for line in seen.lines if line.unread and line.id > self._newest_id] if self.loaded else []
        self.unread, self.lines, self.loaded = seen.unread, seen.lines, True
        self._newest_id = max(self._newest_id, seen.newest_id)
        return fresh

    @rx.event
    async def refresh_if_changed(self):
        """Every few seconds (the page's live ticker): the first tick reads the bell, later ones read
        again only when the database announced a notification for this user; each new one is shown as
        a browser notification too. (Not read on mount: a failed mount-time read during a database
        outage kept the page's own data from loading again once the database was back.)"""
        user = await self._current_user()
        if user is None or (self.loaded and not live.changed_since(self._read_at, [live_key(user.id)])):
            return None
        fresh = await self._reload()
        return [rx.call_script(_SHOW.format(title=json.dumps("Pipeline CRM"), body=json.dumps(line.message),
                                            tag=json.dumps(f"crm-{line.id}"), href=json.dumps(line.href)))
                for line in fresh[:3]]

    @rx.event
    async def open_one(self, notification_id: int):
        """A notification clicked (its link opens the lead): it is read now."""
        picked_id, user, now = whole_number(notification_id), await self._actor(), now_utc()
        if picked_id is not None:
            await self._db(lambda s: mark_read(s, user_id=user.id, now=now, notification_id=picked_id))
        await self._reload()

    @rx.event
    async def mark_all_read(self):
        user, now = await self._actor(), now_utc()
        await self._db(lambda s: mark_read(s, user_id=user.id, now=now))
        await self._reload()

    @rx.event
    def allow_browser_notifications(self):
        return rx.call_script(_ASK)
