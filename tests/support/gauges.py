"""`GaugeTarget`: a /metrics endpoint on loopback serving one gauge whose value a test sets, in
Prometheus' text format: what a real Prometheus scrapes in tests that stand a known value where a
worker's gauge would be (the dev cluster's autoscaling loop reads it as it reads a worker's)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["GaugeTarget"]


class GaugeTarget:
    """Serves `# TYPE <metric> gauge` and one sample, `value` (with `labels`), at http://<address>/metrics."""

    def __init__(self, metric: str, value: float = 0, labels: dict[str, str] | None = None) -> None:
        self.metric = metric
        self.value = value
        self.labels = "{" + ",".join(f'{k}="{v}"' for k, v in (labels or {}).items()) + "}" if labels else ""
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = f"# TYPE {target.metric} gauge\n{target.metric}{target.labels} {target.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "GaugeTarget":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
