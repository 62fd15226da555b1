"""JSON requests to the API server through the `kubernetes` client's ApiClient (its kubeconfig
loading, auth and TLS), objects as plain dicts: what the dev components that act like cluster
processes (the pod runner) need, without the generated models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

__all__ = ["KubeClient", "KubeError"]


class KubeError(RuntimeError):
    """A request failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class KubeClient:
    def __init__(self, kubeconfig: Path, *, timeout: float = 30.0):
        from kubernetes import config

        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.timeout = timeout

    def close(self) -> None:
        self.api.close()

    def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: Any = None,
                content_type: str = "application/json") -> Optional[dict[str, Any]]:
        """The answer's JSON; None on 404; KubeError on any other failure."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(method=method, resource_path=path, query_params=list(query),
                                          header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*params, _request_timeout=self.timeout)
            data = response.read()
        except Exception as e:  # urllib3's connection errors, timeouts
            raise KubeError(f"{method} {path}: {e}") from e
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            text = data.decode("utf-8", "replace") if data else ""
            try:
                text = json.loads(text).get("message", text)
            except (ValueError, AttributeError):
                pass
            raise KubeError(f"{method} {path}: {response.status} {text}", response.status)
        out: dict[str, Any] = json.loads(data) if data else {}
        return out

    def items(self, path: str, *, label_selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        answer = self.request("GET", path, query=query)
        return list((answer or {}).get("items") or [])

    def get(self, path: str) -> Optional[dict[str, Any]]:
        return self.request("GET", path)

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """A strategic-merge patch of a pod's status (conditions merge by type)."""
        self.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", body={"status": dict(status)},
                     content_type="application/strategic-merge-patch+json")

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """What the kubelet does once a pod's containers are gone: delete it with no grace, this
        pod only (a new pod of the same name is not touched)."""
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
                     body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                           "preconditions": {"uid": uid}})
