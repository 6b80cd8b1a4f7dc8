"""Hand the firing alerts to a Prometheus Alertmanager, the way Prometheus hands its own.

Alertmanager groups, routes, inhibits and delivers (Slack, PagerDuty, e-mail, webhooks),
so lupus-stream leaves on-call delivery to it. Like Prometheus, a notifier sends every
firing alert every `interval` with `endsAt` a few intervals ahead (an alert nobody sends
any more ends by itself: a notifier that stops cannot leave one firing for ever), and an
alert that left the firing set once more, with `endsAt` at its resolution. Silences are
mirrored as Alertmanager silences (tagged with their lupus-stream id in the comment;
one that ended early is expired there), so an alert already firing when it is silenced
stops paging, and pages again when its silence ends, as with Alertmanager's own; an
alert whose last transition a silence muted at its event time is not sent at all. The
notifier reads the stores rather than the stream of transitions, so a restarted one, or
two of them, only repeat what Alertmanager deduplicates anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence
from lupus_stream.monitors.matchers import split_matcher

ENDS_AFTER_INTERVALS = 4  # a firing alert not sent again ends this many intervals later
FINGERPRINT_LABEL = "lupus_fingerprint"  # one Alertmanager alert per lupus-stream alert
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")

Post = Callable[[list[dict[str, Any]]], Awaitable[None]]
Active = Callable[[], Awaitable[list[AlertState]]]
Get = Callable[[str], Awaitable[AlertState | None]]
Silences = Callable[[], Awaitable[list[Silence]]]
_TAG = re.compile(r"\(lupus-stream silence (\S+) of ([^()]+)\)\Z")


class SilenceApi(Protocol):
    """Alertmanager's silences: list them, post one (with `id`: replace it), expire one."""

    async def list(self) -> list[dict[str, Any]]: ...

    async def post(self, silence: dict[str, Any]) -> None: ...

    async def expire(self, silence_id: str) -> None: ...


def label_name(name: str) -> str:
    """Alertmanager takes `[A-Za-z_][A-Za-z0-9_]*`: `.`, `:` and `-` become `_`."""
    return _NOT_IN_NAME.sub("_", name)


def alertmanager_labels(labels: dict[str, str], fingerprint: str) -> dict[str, str]:
    """An alert's labels under names Alertmanager takes, none lost and none merged.

    The alert's fingerprint is a label of its own, so two alerts whose labels read alike
    once renamed stay two alerts in Alertmanager. A valid name keeps its name; another
    takes `label_name` of it, or, when that is taken in this alert (`a.b` beside `a_b`),
    the first free `_1`, `_2`, ... after it."""
    out = {FINGERPRINT_LABEL: fingerprint}
    for name in sorted(labels, key=lambda k: (label_name(k) != k, k)):
        base = candidate = label_name(name)
        suffix = 0
        while candidate in out:
            suffix += 1
            candidate = f"{base}_{suffix}"
        out[candidate] = labels[name]
    return dict(sorted(out.items()))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def to_alertmanager(state: AlertState, ends_at: float) -> dict[str, Any]:
    """One alert of Alertmanager's `POST /api/v2/alerts` (never ending before it starts,
    which Alertmanager refuses)."""
    starts = state.active_since if state.active_since is not None else ends_at
    ends_at = max(ends_at, starts)
    return {
        "labels": alertmanager_labels(state.labels, state.fingerprint),
        "annotations": dict(state.annotations),
        "startsAt": _iso(starts),
        "endsAt": _iso(ends_at),
    }


def to_alertmanager_silence(silence: Silence, source: str) -> dict[str, Any]:
    """A lupus-stream silence as Alertmanager's `POST /api/v2/silences` takes it, tagged
    with its id and the store it comes from (`source`)."""
    matchers = []
    for name, spec in sorted(silence.matchers.items()):
        op, value = split_matcher(spec)
        matchers.append(
            {
                "name": label_name(name),
                "value": value,
                "isRegex": "~" in op,
                "isEqual": "!" not in op,
            }
        )
    comment = f"{silence.comment} (lupus-stream silence {silence.id} of {source})".lstrip()
    return {
        "matchers": matchers,
        "startsAt": _iso(silence.starts_at),
        "endsAt": _iso(silence.ends_at),
        "createdBy": silence.created_by or "lupus-stream",
        "comment": comment,
    }


def plan_silences(
    ours: list[Silence], theirs: list[dict[str, Any]], now: float, source: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """What to post (new, or replacing a changed one: with its `id`) and which of
    Alertmanager's silences to expire so that those tagged as coming from `source` mirror
    ours that have not ended; other silences, those of other stores too, are left alone.
    Of two copies (two notifiers racing) the one with the smaller id stays, whatever order
    Alertmanager lists them in. Alertmanager moves a past start to now, so a start is
    compared only while it is ahead."""
    live = {s.id: s for s in ours if s.ends_at > now}
    mirrored: dict[str, dict[str, Any]] = {}
    expire = []
    for theirs_one in sorted(theirs, key=lambda t: str(t.get("id"))):
        tag = _TAG.search(theirs_one.get("comment", ""))
        if tag is None or tag.group(2) != source:
            continue
        if theirs_one.get("status", {}).get("state") == "expired":
            continue
        if tag.group(1) in live and tag.group(1) not in mirrored:
            mirrored[tag.group(1)] = theirs_one
        else:
            expire.append(str(theirs_one["id"]))
    post = []
    for sid, silence in live.items():
        want = to_alertmanager_silence(silence, source)
        have = mirrored.get(sid)
        if have is None:
            post.append(want)
        elif not _same_silence(have, want, silence.starts_at > now):
            post.append({**want, "id": have["id"]})
    return post, expire


def _same_silence(have: dict[str, Any], want: dict[str, Any], pending: bool) -> bool:
    def at(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    def matchers(one: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in one["matchers"]
        )

    return (
        abs(at(have["endsAt"]) - at(want["endsAt"])) < 1.0
        and (not pending or abs(at(have["startsAt"]) - at(want["startsAt"])) < 1.0)
        and matchers(have) == matchers(want)
    )


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
        silences: Silences | None = None,
        silence_api: SilenceApi | None = None,
        source: str = "lupus-stream",
    ) -> None:
        self.post, self.active, self.get = post, active, get
        self.interval, self.clock = interval, clock
        self.silences, self.silence_api, self.source = silences, silence_api, source
        self._firing: dict[str, AlertState] = {}  # what the last round sent as firing

    async def round(self) -> Sent:
        """Send one round. If the post fails nothing is taken as sent, so the next round
        sends it all again; if Alertmanager refuses the batch as invalid, each alert goes
        alone and those it refuses are in `rejected`."""
        now = self.clock()
        try:  # before the alerts, so that a new silence mutes them at once
            mirrored, refused = await self._mirror_silences(now)
        except Exception as exc:  # the alerts go out all the same
            mirrored, refused = 0, [({}, f"silences not mirrored: {type(exc).__name__}: {exc}")]
        firing = {s.fingerprint: s for s in await self.active() if notified(s)}
        ahead = ENDS_AFTER_INTERVALS * self.interval
        sent = Sent(
            [to_alertmanager(s, max(now, s.active_since or now) + ahead) for s in firing.values()],
            rejected=refused,
            silences=mirrored,
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

    async def _mirror_silences(self, now: float) -> tuple[int, list[tuple[dict[str, Any], str]]]:
        """Bring Alertmanager's silences tagged as ours in line with ours: (how many
        changed, those it refused and why); a refused one does not stop the others."""
        if self.silences is None or self.silence_api is None:
            return 0, []
        ours, theirs = await self.silences(), await self.silence_api.list()
        post, expire = plan_silences(ours, theirs, now, self.source)
        refused: list[tuple[dict[str, Any], str]] = []
        changed = 0
        for silence in post:
            try:
                try:
                    await self.silence_api.post(silence)
                except NotFound:  # the one to replace is gone (expired by hand): anew
                    await self.silence_api.post({k: v for k, v in silence.items() if k != "id"})
                changed += 1
            except Exception as exc:
                refused.append((silence, f"{type(exc).__name__}: {exc}"))
        for silence_id in expire:
            try:
                await self.silence_api.expire(silence_id)
                changed += 1
            except Exception as exc:
                refused.append(({"id": silence_id}, f"not expired: {type(exc).__name__}: {exc}"))
        return changed, refused


@dataclass
class Sent:
    """What one round sent: the firing alerts, and those that ended since the last."""

    firing: list[dict[str, Any]]
    ended: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # and why
    silences: int = 0  # Alertmanager silences posted or expired to mirror ours


class NotFound(RuntimeError):
    """Alertmanager has no such silence (a 404)."""


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


class HttpSilenceApi:
    """`SilenceApi` over Alertmanager's HTTP API v2 at `url`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.base, self.timeout = url.rstrip("/") + "/api/v2", timeout

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        import aiohttp

        limit = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=limit) as session,
            session.request(method, self.base + path, json=body) as response,
        ):
            if response.status != 200:
                text = (await response.text())[:500]
                error = {400: Rejected, 404: NotFound}.get(response.status, RuntimeError)
                raise error(f"{method} {self.base}{path} answered {response.status}: {text}")
            return await response.json(content_type=None) if method == "GET" else None

    async def list(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "/silences"))

    async def post(self, silence: dict[str, Any]) -> None:
        await self._call("POST", "/silences", silence)

    async def expire(self, silence_id: str) -> None:
        await self._call("DELETE", f"/silence/{silence_id}")
