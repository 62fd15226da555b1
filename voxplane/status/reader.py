"""Reading a region for `voxplane status`, once or once per `--watch` frame.

A `StatusReader` keeps its connections (one Kubernetes ApiClient, one LiveKit client) and the
rendered desired objects the Kubernetes drift is compared with (rendered on the first frame: the
manifests are read once per command) across frames. A part that cannot be read is an error line
in that frame's `RegionStatus`; the next frame tries again.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import CommandError
from ..manifest.model import Agent, Region
from .kube import read_workloads
from .report import DriftSummary, RegionStatus, assemble
from .rooms import agent_names, attribute, livekit_objects, read_rooms, routes


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def kube_error(exc: BaseException, server: str, context: Optional[str]) -> str:
    """One line for a failed read of the cluster (as `voxplane drift` words it)."""
    from kubernetes.client import ApiException

    where = f"reading the cluster at {server}{f' (context {context})' if context else ''}"
    if isinstance(exc, ApiException):
        reason = f"{exc.status} {exc.reason}".strip() if exc.status else _one_line(exc)
        return f"{where}: {reason}"
    return f"{where}: {_one_line(exc)}"


class StatusReader:
    def __init__(self, root: Path, region: Region, agents: Sequence[Agent], *, context: Optional[str],
                 url: Optional[str], api_key: Optional[str], api_secret: Optional[str], drift: bool = True):
        self.root = root
        self.region = region
        self.agents = tuple(agents)
        self.context = context
        self.url, self.api_key, self.api_secret = url, api_key, api_secret
        self.drift = drift
        self._api: Any = None
        self._livekit: Any = None
        self._desired: Optional[list[Any]] = None
        self._desired_error: Optional[str] = None

    # -- connections ------------------------------------------------------------------------

    def _kube_client(self) -> Any:
        if self._api is None:
            from ..drift.kubernetes.commands import connect

            self._api = connect(self.context)  # CommandError: no kubeconfig / context
        return self._api

    def _livekit_client(self) -> Any:
        if self._livekit is None:
            from ..livekit.commands import connect

            self._livekit = connect(self.region, self.url, self.api_key, self.api_secret)
        return self._livekit

    def close(self) -> None:
        """Close the LiveKit client, also after a Ctrl-C interrupted one of its calls (pending
        requests are cancelled first, so nothing complains at exit)."""
        client, self._livekit = self._livekit, None
        if client is None:
            return
        loop = getattr(client, "_loop", None)
        try:
            if loop is not None and not loop.is_closed():
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            client.close()
        except Exception:  # closing after an interrupt: nothing left to save
            pass

    # -- one frame ----------------------------------------------------------------------------

    def read(self) -> RegionStatus:
        from ..livekit.client import LiveKitError

        status = RegionStatus(self.region.name, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              kube_context=self.context)
        drift = DriftSummary()
        workloads = None
        api = None
        try:
            api = self._kube_client()
            status.kube_server = str(api.configuration.host)
        except CommandError as exc:
            status.kube_error = " ".join(exc.lines).removeprefix("error: ")
        if api is not None:
            workloads = self._read_kube(api, status, drift)

        rooms = None
        try:
            client = self._livekit_client()
            status.livekit_url = client.url
            trunks, rules = client.list_trunks(), client.list_rules()
            rooms = read_rooms(client)
            by_name, room_routes = agent_names(self.agents), routes(self.region.name, self.agents, rules)
            for room in rooms:
                attribute(room, by_name, room_routes)
            status.livekit_objects = livekit_objects(trunks, rules, self.region.name)
            if self.drift:
                self._livekit_drift(client, drift)
        except CommandError as exc:
            status.livekit_error = " ".join(exc.lines).removeprefix("error: ")
        except (LiveKitError, OSError) as exc:
            status.livekit_error = _one_line(exc)
        if status.livekit_error:
            drift.errors.setdefault("livekit", status.livekit_error)
        if status.kube_error:
            drift.errors.setdefault("kubernetes", status.kube_error)
        status.drift = drift
        return assemble(status, self.region, self.agents, workloads, rooms)

    def _read_kube(self, api: Any, status: RegionStatus, drift: DriftSummary) -> Optional[list[Any]]:
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        from ..drift.kubernetes.live import LiveReader

        reader = LiveReader(api, timeout=30)
        try:
            workloads = read_workloads(reader, self.region.name)
        except (ApiException, HTTPError, OSError) as exc:
            status.kube_error = kube_error(exc, reader.server, self.context)
            return None
        if self.drift:
            desired = self._rendered()
            if desired is None:
                drift.errors["kubernetes"] = self._desired_error or "not rendered"
            else:
                from ..drift.kubernetes.report import detect
                from ..drift.kubernetes.secrets import env_lookup

                try:
                    report = detect(self.region, self.agents, desired, reader, secrets=env_lookup(),
                                    context=self.context)
                    drift.kubernetes = len(report.changed) + len(report.missing) + len(report.unexpected)
                except (ApiException, HTTPError, OSError) as exc:
                    drift.errors["kubernetes"] = kube_error(exc, reader.server, self.context)
        return workloads

    def _rendered(self) -> Optional[list[Any]]:
        """The region's desired objects, rendered once (a failure is kept too)."""
        if self._desired is None and self._desired_error is None:
            from ..manifest.problems import ManifestError
            from ..deploy.render import render

            try:
                self._desired = list(render(self.region.name, self.root).kubernetes)
            except ManifestError as exc:
                self._desired_error = f"the manifests do not render: {exc.problems[0] if exc.problems else exc}"
            except Exception as exc:  # a stack file or program problem: say it, keep the rest of the status
                self._desired_error = f"rendering the region failed: {_one_line(exc)}"
        return self._desired

    def _livekit_drift(self, client: Any, drift: DriftSummary) -> None:
        from ..livekit.client import LiveKitError
        from ..drift.livekit import detect
        from ..livekit.secrets import EnvSecrets

        try:
            report = detect(self.region, self.agents, client, EnvSecrets())
        except LiveKitError as exc:
            drift.errors["livekit"] = _one_line(exc)
            return
        drift.livekit = len(report.changed) + len(report.missing) + len(report.unexpected)


def pace(started: float, interval: float) -> float:
    """Seconds to sleep so frames start `interval` apart (0 when reading took longer)."""
    return max(0.0, started + interval - time.monotonic())
