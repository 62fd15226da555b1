"""Platform processes a region runs beside LiveKit (design.md, "controllers"). Each subpackage is
its own image, built from its own folder like the gateway's: it imports nothing else of voxplane,
and this package's `__init__` stays empty of imports so the image can hold just one controller."""
