"""One record per phase-two method, registered in the head file that implements it (as timm
registers a model). The command line, the config checks, the shape checks, online evaluation,
the report and prediction all read these records: adding a method is adding one file under
c2f/heads/ that calls `register`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

KINDS = ("pooled", "map", "grid")


@dataclass(frozen=True)
class Role:
    """A feature role a method reads: the TrainConfig field naming its feature set, and the kind
    the set must be (pooled vector, spatial map, patch grid)."""
    option: str
    kind: str = "pooled"


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable                  # (HeadDims, TrainConfig) -> Head
    roles: dict[str, Role]           # role ("coarse" is read for every frame, "fine" where used) -> Role
    frames: int                      # default --frames: evenly spaced frames, or segments
    budgeted: bool                   # online evaluation with a budget of K applies (c2f evaluate-online)
    stages: tuple[str, ...] = ("train",)    # several: trained with --stage-epochs / --stage-lrs
    summary: str = ""

    @property
    def staged(self) -> bool:
        return len(self.stages) > 1

    def role_of_kind(self, kind: str) -> str | None:
        return next((role for role, r in self.roles.items() if r.kind == kind), None)


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    if any(r.kind not in KINDS for r in method.roles.values()):
        raise ValueError(f"{method.name}: role kinds must be among {KINDS}")
    _METHODS[method.name] = method
    return method


def _discover() -> None:
    """Importing c2f.heads imports every module in it, so that each registers its methods."""
    import c2f.heads  # noqa: F401


def methods() -> dict[str, Method]:
    _discover()
    return dict(_METHODS)


def method(name: str) -> Method:
    _discover()
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(_METHODS)}")
    return _METHODS[name]
