"""One record per phase-two method, registered by the head file that implements it (as timm
registers a model): its head, its settings (a small dataclass of options beside the head), the
feature roles it reads, whether an online budget applies, its training stages. The command line,
config.json, the report and predict read these records; nothing else lists the methods.

This module is the registry alone and imports no head: `c2f.heads` imports every head file (each
registers its methods) and is where the full list is asked for (`c2f.heads.methods()`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.core.errors import SettingsError
from pipeline.core.options import flag_name, validate

log = logging.getLogger(__name__)
KINDS = ("pooled", "map", "grid")


class Settings:
    """Base of a method's settings dataclass: its fields are `pipeline.core.options.option`s (default,
    help, bounds, choices, `variant`), validated when the dataclass is made."""

    def __post_init__(self):
        validate(self)


@dataclass(frozen=True)
class Role:
    """A feature role a method reads: the TrainConfig field naming its feature set, and the kind
    the set must be (pooled vector, spatial map, patch grid)."""
    option: str
    kind: str = "pooled"


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable                  # (HeadDims, settings) -> Head
    settings: type                   # the method's Settings dataclass
    roles: dict[str, Role]           # role ("coarse" is read for every frame, "fine" where used) -> Role
    budgeted: bool                   # online evaluation with a budget of K applies (c2f evaluate-online)
    stages: tuple[str, ...] = ("train",)    # several: trained with the settings' stage_epochs / stage_lrs
    summary: str = ""
    width_scaled_rate: bool = True   # single-stage: a wide layer peaks below --lr (c2f.training.schedule)

    @property
    def staged(self) -> bool:
        return len(self.stages) > 1

    def role_of_kind(self, kind: str) -> str | None:
        return next((role for role, r in self.roles.items() if r.kind == kind), None)

    def setting_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.settings)]

    def variant_keys(self) -> list[str]:
        """The settings that make a run another variant of this method (the report's rows)."""
        return [f.name for f in dataclasses.fields(self.settings) if f.metadata.get("variant")]

    def defaults(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings())

    def make_settings(self, values: "dict | Settings | None" = None, strict: bool = False):
        """The settings dataclass from {field: value} (None values: the default). Values for fields
        this method has not: SettingsError when strict (a config file), else a warning (a flag
        shared by several methods, given to one that does not read it)."""
        if isinstance(values, self.settings):
            return values
        values = {k: v for k, v in (values or {}).items() if v is not None}
        foreign = sorted(set(values) - set(self.setting_names()))
        if foreign:
            flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
            message = f"{flags} do{'es' if len(foreign) == 1 else ''} not apply to --method {self.name}"
            if strict:
                raise SettingsError(message, f"its settings: {', '.join(self.setting_names()) or 'none'}")
            log.warning("%s; ignored", message)
        own = {k: v for k, v in values.items() if k in self.setting_names()}
        for field in dataclasses.fields(self.settings):          # a tuple field given as a list (JSON)
            if isinstance(field.default, tuple) and isinstance(own.get(field.name), list):
                own[field.name] = tuple(own[field.name])
        return self.settings(**own)

    def flags(self) -> list[str]:
        return [flag_name(f) for f in dataclasses.fields(self.settings)]


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    if any(r.kind not in KINDS for r in method.roles.values()):
        raise ValueError(f"{method.name}: role kinds must be among {KINDS}")
    if not (dataclasses.is_dataclass(method.settings) and issubclass(method.settings, Settings)):
        raise ValueError(f"{method.name}: its settings must be a dataclass deriving from c2f.methods.Settings")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def registered() -> dict[str, Method]:
    """The methods registered so far (all of them once c2f.heads is imported)."""
    return dict(_METHODS)
