"""voxplane: a self-hosted voice-AI platform per region, declared from YAML in git."""

__version__ = "0.1.0"
