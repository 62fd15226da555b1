"""The controller's configuration: the ConfigMap's `config.json`, written by the region's render
(voxplane/desired/deletion_cost.py) and read by the controller. No secret is in it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Config format version; the controller refuses a config it does not know.
CONFIG_VERSION = 1


@dataclass(frozen=True)
class Pool:
    """One agent pool: the namespace and the labels of its pods."""

    namespace: str
    name: str
    selector: Mapping[str, str]

    @property
    def label_selector(self) -> str:
        """The pods' label selector as the Kubernetes API takes it (`k=v,k=v`)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


@dataclass(frozen=True)
class Config:
    """Attributes:
        prometheus_url: Prometheus' base URL (its `/api/v1/query` answers the query).
        query: PromQL giving each agent pod's active jobs, one sample per (namespace, pod).
        pools: The agent pools whose pods carry the cost.
        interval_seconds: Seconds between readings (about Prometheus' scrape interval: reading
            more often sees the same samples).
        writes_per_second, burst: The write budget: a token bucket of `burst` patches, refilled
            at `writes_per_second` (client-go's default client limits are 5 and 10).
        metrics_port: Prometheus `/metrics`, `/healthz`, `/readyz`.
        request_timeout_seconds: Timeout of each call to Prometheus and the API server.
    """

    prometheus_url: str
    query: str
    pools: tuple[Pool, ...]
    interval_seconds: float = 15.0
    writes_per_second: float = 5.0
    burst: int = 10
    metrics_port: int = 9103
    request_timeout_seconds: float = 10.0
    version: int = field(default=CONFIG_VERSION)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(sorted({p.namespace for p in self.pools}))

    def to_json(self) -> str:
        return json.dumps({
            "version": self.version,
            "prometheus_url": self.prometheus_url,
            "query": self.query,
            "interval_seconds": self.interval_seconds,
            "writes_per_second": self.writes_per_second,
            "burst": self.burst,
            "metrics_port": self.metrics_port,
            "request_timeout_seconds": self.request_timeout_seconds,
            "pools": [{"namespace": p.namespace, "name": p.name, "selector": dict(sorted(p.selector.items()))}
                      for p in self.pools],
        }, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """The config, or ValueError naming what is wrong."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"config is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError("config is not a JSON object")
        if data.get("version") != CONFIG_VERSION:
            raise ValueError(f"config version {data.get('version')!r} is not {CONFIG_VERSION}")
        try:
            config = cls(
                prometheus_url=str(data["prometheus_url"]).rstrip("/"),
                query=str(data["query"]),
                pools=tuple(Pool(str(p["namespace"]), str(p["name"]), {str(k): str(v) for k, v in p["selector"].items()})
                            for p in data["pools"]),
                interval_seconds=float(data.get("interval_seconds", 15.0)),
                writes_per_second=float(data.get("writes_per_second", 5.0)),
                burst=int(data.get("burst", 10)),
                metrics_port=int(data.get("metrics_port", 9103)),
                request_timeout_seconds=float(data.get("request_timeout_seconds", 10.0)),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"config: missing or malformed {e}") from e
        if config.interval_seconds <= 0 or config.writes_per_second <= 0 or config.burst < 1:
            raise ValueError("config: interval_seconds and writes_per_second must be positive, burst at least 1")
        if not all(p.selector for p in config.pools):
            raise ValueError("config: every pool needs a pod selector")
        return config
