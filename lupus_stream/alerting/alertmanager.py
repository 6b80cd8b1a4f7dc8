"""Hand the firing alerts to a Prometheus Alertmanager, the way Prometheus hands its own.

Alertmanager groups, routes, inhibits and delivers (Slack, PagerDuty, e-mail, webhooks),
so lupus-stream leaves on-call delivery to it. Like Prometheus, a notifier sends every
firing alert every `interval` with `endsAt` a few intervals ahead (an alert nobody sends
any more ends by itself: a notifier that stops cannot leave one firing for ever), and an
alert that left the firing set once more, with `endsAt` at its resolution. Alerts muted by
a lupus-stream silence are not sent. It reads the alert store rather than the stream of
transitions, so a restarted notifier, or two of them, only repeat what Alertmanager
deduplicates anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lupus_stream.alerting.lifecycle import AlertState

ENDS_AFTER_INTERVALS = 4  # a firing alert not sent again ends this many intervals later
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")

Post = Callable[[list[dict[str, Any]]], Awaitable[None]]
Active = Callable[[], Awaitable[list[AlertState]]]
Get = Callable[[str], Awaitable[AlertState | None]]


def label_name(name: str) -> str:
    """Alertmanager takes `[A-Za-z_][A-Za-z0-9_]*`: `.`, `:` and `-` become `_`."""
    return _NOT_IN_NAME.sub("_", name)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def to_alertmanager(state: AlertState, ends_at: float) -> dict[str, Any]:
    """One alert of Alertmanager's `POST /api/v2/alerts` (never ending before it starts,
    which Alertmanager refuses)."""
    starts = state.active_since if state.active_since is not None else ends_at
    ends_at = max(ends_at, starts)
    return {
        "labels": {label_name(k): v for k, v in sorted(state.labels.items())},
        "annotations": dict(state.annotations),
        "startsAt": _iso(starts),
        "endsAt": _iso(ends_at),
    }


def notified(state: AlertState) -> bool:
    """Whether Alertmanager should hear of the alert as firing now."""
    return state.status == "firing" and not state.silenced_by


class AlertmanagerNotifier:
    """Rounds of `POST /api/v2/alerts`: the firing alerts, then those that stopped."""

    def __init__(
        self,
        post: Post,
        active: Active,
        get: Get,
        interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.post, self.active, self.get = post, active, get
        self.interval, self.clock = interval, clock
        self._firing: dict[str, AlertState] = {}  # what the last round sent as firing

    async def round(self) -> Sent:
        """Send one round. If the post fails nothing is taken as sent, so the next round
        sends it all again; if Alertmanager refuses the batch as invalid, each alert goes
        alone and those it refuses are in `rejected`."""
        now = self.clock()
        firing = {s.fingerprint: s for s in await self.active() if notified(s)}
        ahead = ENDS_AFTER_INTERVALS * self.interval
        sent = Sent(
            [to_alertmanager(s, max(now, s.active_since or now) + ahead) for s in firing.values()]
        )
        for fp, last in self._firing.items():
            if fp in firing:
                continue
            state = await self.get(fp)
            if state is not None and state.status == "resolved" and state.resolved_at is not None:
                sent.ended.append(to_alertmanager(state, state.resolved_at))
            else:  # muted since, back to pending, or gone: it ends now
                sent.ended.append(to_alertmanager(last, now))
        alerts = sent.firing + sent.ended
        if alerts:
            try:
                await self.post(alerts)
            except Rejected:  # one bad alert must not hold back the others
                for alert in alerts:
                    try:
                        await self.post([alert])
                    except Rejected as exc:
                        sent.rejected.append((alert, str(exc)))
        self._firing = firing
        return sent


@dataclass
class Sent:
    """What one round sent: the firing alerts, and those that ended since the last."""

    firing: list[dict[str, Any]]
    ended: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # and why


class Rejected(RuntimeError):
    """Alertmanager refused alerts as invalid (400; it keeps the valid ones of a batch):
    sending them again would not help. Other answers (a wrong path, a proxy's 401 or 429)
    fail the round, which is sent again whole."""


def http_post(url: str, timeout: float = 10.0) -> Post:
    """A `Post` to the Alertmanager at `url` (e.g. `http://alertmanager:9093`)."""
    import aiohttp

    endpoint = url.rstrip("/") + "/api/v2/alerts"

    async def post(alerts: list[dict[str, Any]]) -> None:
        limit = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=limit) as session,
            session.post(endpoint, json=alerts) as response,
        ):
            if response.status != 200:
                body = (await response.text())[:500]
                error = Rejected if response.status == 400 else RuntimeError  # 404, 429...
                raise error(f"{endpoint} answered {response.status}: {body}")

    return post
