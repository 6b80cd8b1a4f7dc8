"""`lupus-stream notify`: hand the firing alerts to an Alertmanager, every interval;
`lupus-stream alerts`: what is pending or firing now."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from lupus_stream.alerting.alertmanager import AlertmanagerNotifier, HttpSilenceApi, http_post
from lupus_stream.alerting.silences import muting
from lupus_stream.cli.alert_store import AlertStoreAccess, StoreError
from lupus_stream.cli.console import console, errors, fail, state_line
from lupus_stream.cli.options import SettingsOpt, StateDirOpt
from lupus_stream.settings import Settings


def register(app: typer.Typer, settings_for: Callable[[Path | None], Settings]) -> None:
    """Add `notify` to `app`; `settings_for(path)` loads the settings."""

    @app.command()
    def notify(
        alertmanager: Annotated[
            str,
            typer.Option(envvar="LUPUS_ALERTMANAGER_URL", help="e.g. http://127.0.0.1:9093"),
        ],
        interval: Annotated[
            float, typer.Option(min=1.0, help="Seconds between rounds (Prometheus: 60).")
        ] = 60.0,
        once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
        data_dir: StateDirOpt = Path("lupus-data"),
        settings_file: SettingsOpt = None,
    ) -> None:
        """Send the firing alerts and the silences to an Alertmanager, every interval.

        Alertmanager groups, routes and delivers them; alerts that resolved are sent once
        more as ended. Reads the alert states of the Kafka runtime (Redis) when a broker
        is configured, of the embedded runtime (--data-dir) otherwise.
        """
        store = AlertStoreAccess(settings_for(settings_file), data_dir)
        notifier = AlertmanagerNotifier(
            http_post(alertmanager),
            store.active,
            store.get,
            interval=interval,
            silences=store.silences,
            silence_api=HttpSilenceApi(alertmanager),
            source=store.identity,
        )
        errors.print(f"[dim]notify: alerts of {store.where} to {alertmanager}[/]")
        ok = asyncio.run(_rounds(notifier, interval, once))
        if not ok:
            raise typer.Exit(1)


def register_alerts(app: typer.Typer, settings_for: Callable[[Path | None], Settings]) -> None:
    """Add `alerts` to `app`."""

    @app.command()
    def alerts(
        data_dir: StateDirOpt = Path("lupus-data"),
        settings_file: SettingsOpt = None,
    ) -> None:
        """List the pending and firing alerts, firing first.

        From Redis when a broker is configured, the embedded runtime's --data-dir
        otherwise.
        """
        store = AlertStoreAccess(settings_for(settings_file), data_dir)
        try:
            states = asyncio.run(store.active())
            silences = asyncio.run(store.silences())
        except StoreError as exc:
            fail(exc, 1)
        states.sort(key=lambda s: (s.status != "firing", s.active_since or s.pending_since or 0))
        now = time.time()
        for state in states:
            console.print(state_line(state, muting(state.labels, now, silences)))
        if not states:
            errors.print(f"[dim]no pending or firing alert in {store.where}[/]")


async def _rounds(notifier: AlertmanagerNotifier, interval: float, once: bool) -> bool:
    """Rounds until SIGTERM or SIGINT (or one, with `once`); False if the last failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ok = True
    while True:
        try:
            sent = await notifier.round()
            ok = not sent.rejected
            for item, reason in sent.rejected:
                what = item.get("labels") or item.get("matchers") or item.get("id")
                errors.print(f"[red]notify:[/] {what or 'silences'}: {reason}")
            if sent.firing or sent.ended or sent.silences:
                errors.print(
                    f"[dim]notify: sent {len(sent.firing)} firing, {len(sent.ended)} ended, "
                    f"{sent.silences} silence changes[/]"
                )
        except Exception as exc:  # the next round sends it all again
            ok = False
            errors.print(f"[red]notify:[/] round failed: {type(exc).__name__}: {exc}")
        if once or stop.is_set():
            return ok
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return ok
