"""Kubernetes resource quantities ("500m", "2", "4Gi") as numbers, for sums and comparisons."""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_FORM = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(text: str) -> Decimal:
    """"500m" -> 0.5, "4Gi" -> 4294967296 (the forms the schemas accept)."""
    match = _FORM.match(text)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]


def quantity_text(value: int | float | str) -> str:
    """A quantity as Kubernetes writes it: `2` -> "2", `0.5` -> "0.5", `1e3` -> "1000" (YAML numbers
    are accepted for CPU, as Kubernetes accepts them; the rendered value is always a string)."""
    if isinstance(value, str):
        return value
    number = Decimal(str(value))
    text = format(number.normalize(), "f") if number != number.to_integral_value() else str(int(number))
    return text
