"""Kubernetes resource quantities ("500m", "2", "4Gi") as numbers, for sums and comparisons."""

from __future__ import annotations

from decimal import Decimal


def parse_quantity(text: str | int | float) -> Decimal:
    """"500m" -> 0.5, "4Gi" -> 4294967296, "1e3" -> 1000: every form the API server accepts, by the
    Kubernetes client's own parser (imported here, not at module load: it pulls in the whole client)."""
    from kubernetes.utils import parse_quantity as parse

    return Decimal(parse(text))


def quantity_text(value: int | float | str) -> str:
    """A quantity as Kubernetes writes it: `2` -> "2", `0.5` -> "0.5", `1e3` -> "1000" (YAML numbers
    are accepted for CPU, as Kubernetes accepts them; the rendered value is always a string)."""
    if isinstance(value, str):
        return value
    number = Decimal(str(value))
    text = format(number.normalize(), "f") if number != number.to_integral_value() else str(int(number))
    return text
