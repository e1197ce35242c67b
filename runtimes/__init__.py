"""Runtime backends behind one protocol; see ``base.Runtime`` and ``registry.BackendEntry``."""

from edgesr.runtimes.base import Runtime, RuntimeInfo
from edgesr.runtimes.registry import BACKENDS, config_for, create_runtime

__all__ = ["BACKENDS", "Runtime", "RuntimeInfo", "config_for", "create_runtime"]
