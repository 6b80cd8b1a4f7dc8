"""The Alertmanager notifier's rounds, against a recorded post: what goes out, when it
ends, and that a failed round is sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from lupus_stream.alerting.alertmanager import (
    AlertmanagerNotifier,
    NotFound,
    Rejected,
    alertmanager_labels,
    label_name,
    plan_silences,
    to_alertmanager_silence,
)
from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def state(fp: str, status: str = "firing", **more: Any) -> AlertState:
    return AlertState(
        fingerprint=fp,
        product="p",
        monitor="p/ctr",
        receiver="oncall",
        labels={"alertname": "ctr", "model.version": "7", "fp": fp},
        annotations={"summary": f"ctr of {fp}"},
        status=status,  # type: ignore[arg-type]
        **{"active_since": NOW - 600, **more},
    )


class Harness:
    def __init__(self, states: list[AlertState]) -> None:
        self.states = {s.fingerprint: s for s in states}
        self.posts: list[list[dict[str, Any]]] = []
        self.fail = False
        self.now = NOW
        self.notifier = AlertmanagerNotifier(
            self.post, self.active, self.get, interval=60.0, clock=lambda: self.now
        )

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("alertmanager down")
        self.posts.append(alerts)

    async def active(self) -> list[AlertState]:
        return [s for s in self.states.values() if s.status in ("pending", "firing")]

    async def get(self, fp: str) -> AlertState | None:
        return self.states.get(fp)

    def round(self) -> tuple[list[str], list[str]]:
        sent = asyncio.run(self.notifier.round())
        return [a["labels"]["fp"] for a in sent.firing], [a["labels"]["fp"] for a in sent.ended]


def test_firing_alerts_go_out_with_an_end_ahead_and_others_do_not() -> None:
    harness = Harness(
        [
            state("a"),
            state("muted", silenced_by=("s1",)),
            state("p", "pending"),
            state("r", "resolved"),
        ]
    )
    assert harness.round() == (["a"], [])
    [[alert]] = harness.posts
    assert alert == {
        "labels": {"alertname": "ctr", "fp": "a", "lupus_fingerprint": "a", "model_version": "7"},
        "annotations": {"summary": "ctr of a"},
        "startsAt": "2026-05-28T20:16:40Z",
        "endsAt": "2026-05-28T20:30:40Z",  # four intervals ahead: ends if nobody resends
    }
    harness.now += 60
    assert harness.round() == (["a"], [])
    assert harness.posts[-1][0]["endsAt"] == "2026-05-28T20:31:40Z"


def test_an_alert_that_stops_firing_is_sent_once_as_ended() -> None:
    harness = Harness([state("a"), state("b"), state("c")])
    harness.round()
    resolved_at = NOW + 30
    harness.states["a"] = msgspec.structs.replace(
        harness.states["a"], status="resolved", resolved_at=resolved_at
    )
    harness.states["b"] = msgspec.structs.replace(harness.states["b"], silenced_by=("s1",))
    del harness.states["c"]
    harness.now += 60
    assert harness.round() == ([], ["a", "b", "c"])
    ends = {a["labels"]["fp"]: a["endsAt"] for a in harness.posts[-1]}
    assert ends == {
        "a": "2026-05-28T20:27:10Z",  # at its resolution
        "b": "2026-05-28T20:27:40Z",  # muted since: now
        "c": "2026-05-28T20:27:40Z",
    }
    harness.now += 60
    assert harness.round() == ([], [])
    assert len(harness.posts) == 2  # an empty round posts nothing


def test_a_failed_round_is_sent_again() -> None:
    harness = Harness([state("a")])
    harness.round()
    harness.states["a"] = msgspec.structs.replace(
        harness.states["a"], status="resolved", resolved_at=NOW + 5
    )
    harness.fail = True
    with pytest.raises(RuntimeError, match="alertmanager down"):
        harness.round()
    harness.fail = False
    assert harness.round() == ([], ["a"])


@pytest.mark.parametrize(
    ("name", "expected"),
    [("region", "region"), ("model.version", "model_version"), ("a:b-c", "a_b_c")],
)
def test_label_names_are_what_alertmanager_takes(name: str, expected: str) -> None:
    assert label_name(name) == expected


def test_labels_that_read_alike_once_renamed_are_all_kept() -> None:
    labels = {"a.b": "dot", "a_b": "underscore", "a-b": "dash", "a_b_1": "taken", "x": "1"}
    assert alertmanager_labels(labels, "f1") == {
        "a_b": "underscore",  # a valid name keeps its name
        "a_b_1": "taken",
        "a_b_2": "dash",  # the others in the order of their names
        "a_b_3": "dot",
        "lupus_fingerprint": "f1",
        "x": "1",
    }
    mine = alertmanager_labels({"lupus_fingerprint": "mine"}, "f2")
    assert mine == {"lupus_fingerprint": "f2", "lupus_fingerprint_1": "mine"}


def test_alerts_whose_labels_read_alike_once_renamed_stay_two_alerts() -> None:
    first, second = state("a"), state("b")
    second = msgspec.structs.replace(second, labels={**first.labels, "model_version": "7"})
    second.labels.pop("model.version")
    harness = Harness([first, second])
    harness.round()
    [posted] = harness.posts
    assert len({tuple(sorted(a["labels"].items())) for a in posted}) == 2


def test_an_alert_alertmanager_refuses_does_not_hold_back_the_others() -> None:
    harness = Harness([state("a"), state("bad"), state("c")])

    async def picky(alerts: list[dict[str, Any]]) -> None:
        if any(a["labels"]["fp"] == "bad" for a in alerts):
            raise Rejected("400: bad alert")
        harness.posts.append(alerts)

    harness.notifier.post = picky
    sent = asyncio.run(harness.notifier.round())
    assert [[a["labels"]["fp"] for a in post] for post in harness.posts] == [["a"], ["c"]]
    assert [(a["labels"]["fp"], why) for a, why in sent.rejected] == [("bad", "400: bad alert")]


def test_an_alert_stamped_ahead_of_the_clock_never_ends_before_it_starts() -> None:
    harness = Harness([state("a", active_since=NOW + 3600)])
    harness.round()
    [[alert]] = harness.posts
    assert alert["startsAt"] == "2026-05-28T21:26:40Z"
    assert alert["endsAt"] == "2026-05-28T21:30:40Z"  # four intervals after its start
    del harness.states["a"]
    harness.round()
    [ended] = harness.posts[-1]
    assert ended["endsAt"] == ended["startsAt"]


def silence(sid: str, starts: float, ends: float, **matchers: str) -> Silence:
    return Silence(id=sid, matchers=matchers, starts_at=starts, ends_at=ends, comment="why")


def test_silences_become_alertmanager_silences_tagged_with_their_id() -> None:
    ours = silence(
        "s1", NOW - 60, NOW + 3600, region="eu", host="!=db", **{"model.version": "=~7|8"}
    )
    assert to_alertmanager_silence(ours, "here") == {
        "matchers": [
            {"name": "host", "value": "db", "isRegex": False, "isEqual": False},
            {"name": "model_version", "value": "7|8", "isRegex": True, "isEqual": True},
            {"name": "region", "value": "eu", "isRegex": False, "isEqual": True},
        ],
        "startsAt": "2026-05-28T20:25:40Z",
        "endsAt": "2026-05-28T21:26:40Z",
        "createdBy": "lupus-stream",
        "comment": "why (lupus-stream silence s1 of here)",
    }
    negated = silence("s2", NOW, NOW + 1, a="!~x", b="y")
    assert to_alertmanager_silence(negated, "here")["matchers"] == [
        {"name": "a", "value": "x", "isRegex": True, "isEqual": False},
        {"name": "b", "value": "y", "isRegex": False, "isEqual": True},
    ]


def test_the_plan_mirrors_ours_and_leaves_the_others_alone() -> None:
    kept = silence("a1", NOW - 600, NOW + 3600, region="eu")
    shortened = silence("b2", NOW - 600, NOW + 60, region="us")
    new = silence("c3", NOW + 600, NOW + 7200, region="ap")
    ended = silence("d4", NOW - 600, NOW - 1, region="sa")

    def mirror(s: Silence, am_id: str, **change: Any) -> dict[str, Any]:
        # as Alertmanager lists it: its own id, a past start moved to when it was posted
        return {
            **to_alertmanager_silence(s, "here"),
            "startsAt": "2026-05-28T20:20:00Z",
            "id": am_id,
            "status": {"state": "active"},
            **change,
        }

    theirs = [
        mirror(kept, "am-1"),
        mirror(shortened, "am-2", endsAt="2026-05-28T21:26:40Z"),  # ours ends sooner now
        mirror(ended, "am-4"),
        mirror(kept, "am-0"),  # a second copy (two notifiers raced): the smaller id stays
        mirror(ended, "am-6", status={"state": "expired"}),
        {"id": "am-7", "comment": "someone else's", "status": {"state": "active"}},
        {**mirror(ended, "am-8"), "comment": "why (lupus-stream silence d4 of elsewhere)"},
    ]
    post, expire = plan_silences([kept, shortened, new, ended], theirs, NOW, "here")
    assert [(p.get("id"), p["comment"]) for p in post] == [
        ("am-2", "why (lupus-stream silence b2 of here)"),
        (None, "why (lupus-stream silence c3 of here)"),
    ]
    assert sorted(expire) == ["am-1", "am-4"]
    assert plan_silences([kept], [mirror(kept, "am-1")], NOW, "here") == ([], [])
    assert plan_silences([], [mirror(kept, "am-1")], NOW, "elsewhere") == ([], [])


class FakeSilenceApi:
    def __init__(self) -> None:
        self.silences: list[dict[str, Any]] = []

    async def list(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.silences]

    async def post(self, silence: dict[str, Any]) -> None:
        if silence["matchers"][0]["value"] == "refuse-me":
            raise Rejected("400: bad matcher")
        old = silence.get("id")
        self.silences = [s for s in self.silences if s["id"] != old]
        self.silences.append(
            {**silence, "id": f"am-{len(self.silences)}", "status": {"state": "active"}}
        )

    async def expire(self, silence_id: str) -> None:
        self.silences = [s for s in self.silences if s["id"] != silence_id]


def test_a_round_mirrors_the_silences_before_the_alerts() -> None:
    harness = Harness([state("a")])
    api = FakeSilenceApi()
    ours = [
        silence("s1", NOW - 60, NOW + 3600, fp="a"),
        silence("s2", NOW, NOW + 60, fp="refuse-me"),
    ]

    async def our_silences() -> list[Silence]:
        return ours

    harness.notifier.silences, harness.notifier.silence_api = our_silences, api
    harness.notifier.source = "here"
    sent = asyncio.run(harness.notifier.round())
    assert sent.silences == 1 and [why for _, why in sent.rejected] == [
        "Rejected: 400: bad matcher"
    ]
    assert [s["comment"] for s in api.silences] == ["why (lupus-stream silence s1 of here)"]
    assert [a["labels"]["fp"] for a in sent.firing] == ["a"]  # Alertmanager mutes it
    ours = ours[:1]
    assert asyncio.run(harness.notifier.round()).silences == 0
    ours = []
    assert asyncio.run(harness.notifier.round()).silences == 1
    assert api.silences == []


def test_alerts_go_out_when_the_silences_cannot_be_mirrored() -> None:
    harness = Harness([state("a")])

    class Down(FakeSilenceApi):
        async def list(self) -> list[dict[str, Any]]:
            raise RuntimeError("429 too many requests")

    async def our_silences() -> list[Silence]:
        return []

    harness.notifier.silences, harness.notifier.silence_api = our_silences, Down()
    sent = asyncio.run(harness.notifier.round())
    assert [a["labels"]["fp"] for a in sent.firing] == ["a"] and len(harness.posts) == 1
    assert [why for _, why in sent.rejected] == [
        "silences not mirrored: RuntimeError: 429 too many requests"
    ]


def test_a_mirror_expired_by_hand_is_posted_anew() -> None:
    harness = Harness([])
    ours = [silence("s1", NOW - 60, NOW + 3600, fp="a")]

    class Forgetful(FakeSilenceApi):
        async def post(self, silence: dict[str, Any]) -> None:
            if "id" in silence:
                raise NotFound("404")
            await super().post(silence)

    api = Forgetful()
    stale = {**to_alertmanager_silence(ours[0], "here"), "endsAt": "2030-01-01T00:00:00Z"}
    api.silences = [{**stale, "id": "gone", "status": {"state": "active"}}]

    async def our_silences() -> list[Silence]:
        return ours

    harness.notifier.silences, harness.notifier.silence_api = our_silences, api
    harness.notifier.source = "here"
    sent = asyncio.run(harness.notifier.round())
    assert sent.rejected == [] and sent.silences == 1
    assert [s["endsAt"] for s in api.silences] == ["2030-01-01T00:00:00Z", "2026-05-28T21:26:40Z"]
