"""One record per phase-two method, registered by the head file that implements it (as timm
registers a model): its head, its settings (a small dataclass of options beside the head), the
feature roles it reads, whether an online budget applies, its training stages. The command line,
config.json, the report and predict read these records; nothing else lists the methods.

The feature roles are data the method declares: each names the setting that holds its feature set
(`--coarse`, `--fine`, `--glance`, `--focus`), the kind of set it must be and the set read when the
option is not given. `register` adds one setting per role to the method's settings dataclass, so a
role's option is a setting like any other (flags, config.json, the report's variants). A role may
name several sets (`many`: AR-Net's backbones at several resolutions, `--fine a,b,c`); a run then
reads them as the data roles `fine.0`, `fine.1`, ... (`data_roles`).

This module is the registry alone and imports no head: `c2f.heads` imports every head file (each
registers its methods) and is where the full list is asked for (`c2f.heads.methods()`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline.core.errors import SettingsError
from pipeline.core.options import flag_name, option, validate

log = logging.getLogger(__name__)
KINDS = ("pooled", "map", "grid")


class Settings:
    """Base of a method's settings dataclass: its fields are `pipeline.core.options.option`s (default,
    help, bounds, choices, `variant`), validated when the dataclass is made."""

    def __post_init__(self):
        validate(self)


@dataclass(frozen=True)
class Role:
    """A feature role a method reads: the setting naming its feature set, the kind the set must be
    (pooled vector, spatial map, patch grid), the set read by default, and whether the setting names
    several sets (comma-separated; read as the data roles ROLE.0, ROLE.1, ...)."""
    option: str
    kind: str = "pooled"
    default: str = ""
    many: bool = False
    help: str = ""

    def sets(self, value: str) -> list[str]:
        """The feature sets a value of the role's setting names."""
        names = [name.strip() for name in str(value).split(",") if name.strip()]
        if not names or len(names) > 1 and not self.many:
            raise SettingsError(f"--{self.option.replace('_', '-')} {value!r}: give "
                                + ("one feature set or several, comma-separated" if self.many else "one feature set"))
        return names


# the papers' cheap and expensive sets (LiteEval Sec. 4.1), the roles most methods read
COARSE = Role("coarse", "pooled", "mobilenet_v2@112", help="cheap feature set, read for every frame the head visits")
FINE = Role("fine", "pooled", "resnet101@224", help="expensive feature set, read only where the head uses it")


def data_role(role: str, index: int | None = None) -> str:
    """The key a role's features are read under: the role itself, or ROLE.i for the i-th of several sets."""
    return role if index is None else f"{role}.{index}"


def role_of(data_key: str) -> str:
    """The role a data key belongs to (`fine.1` -> `fine`)."""
    return data_key.split(".", 1)[0]


@dataclass(frozen=True)
class Preset:
    """A paper's settings for a method, shipped (`c2f train-head --preset NAME`): the flat settings (shared
    and the method's) and where each number comes from, saying what neither the paper nor the authors'
    code states."""
    settings: dict
    source: str


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
    presets: dict[str, Preset] = field(default_factory=dict)     # name -> the paper's settings

    @property
    def staged(self) -> bool:
        return len(self.stages) > 1

    def role_of_kind(self, kind: str) -> str | None:
        return next((role for role, r in self.roles.items() if r.kind == kind), None)

    def data_roles(self, settings) -> dict[str, str]:
        """Data key -> feature set, for the settings' values of the roles (ROLE.i for a role of several sets)."""
        found = {}
        for role, r in self.roles.items():
            names = r.sets(getattr(settings, r.option))
            found |= {data_role(role, i if r.many else None): name for i, name in enumerate(names)}
        return found

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
        if dataclasses.is_dataclass(values):        # the declared dataclass (without the role settings)
            values = dataclasses.asdict(values)
        values = {k: v for k, v in (values or {}).items() if v is not None}
        foreign = sorted(set(values) - set(self.setting_names()))
        if foreign:
            flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
            message = f"{flags} do{'es' if len(foreign) == 1 else ''} not apply to --method {self.name}"
            if strict:
                raise SettingsError(message, f"its settings: {', '.join(self.setting_names()) or 'none'}")
            log.warning("%s; ignored", message)
        own = {k: v for k, v in values.items() if k in self.setting_names()}
        for setting in dataclasses.fields(self.settings):          # a tuple field given as a list (JSON)
            if isinstance(setting.default, tuple) and isinstance(own.get(setting.name), list):
                own[setting.name] = tuple(own[setting.name])
        return self.settings(**own)

    def flags(self) -> list[str]:
        return [flag_name(f) for f in dataclasses.fields(self.settings)]


_METHODS: dict[str, Method] = {}


def _with_role_settings(name: str, settings: type, roles: dict[str, Role]) -> type:
    """The method's settings dataclass with one more setting per role: the feature set(s) it reads."""
    own = {f.name for f in dataclasses.fields(settings)}
    clash = [r.option for r in roles.values() if r.option in own]
    if clash:
        raise ValueError(f"{name}: the settings already have fields named like its roles' options: {clash}")
    fields = [(r.option, str, option(r.default, r.help or f"{r.kind} feature set{'s, comma-separated' if r.many else ''}",
                                     variant=True)) for r in roles.values()]
    return dataclasses.make_dataclass(settings.__name__, fields, bases=(settings,))


def register(method: Method) -> Method:
    """Record a method (its settings gain a setting per role: `_with_role_settings`)."""
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    if any(r.kind not in KINDS for r in method.roles.values()):
        raise ValueError(f"{method.name}: role kinds must be among {KINDS}")
    if any(not r.default for r in method.roles.values()):
        raise ValueError(f"{method.name}: every role needs the feature set it reads by default")
    if not (dataclasses.is_dataclass(method.settings) and issubclass(method.settings, Settings)):
        raise ValueError(f"{method.name}: its settings must be a dataclass deriving from c2f.methods.Settings")
    taken = {name for m in _METHODS.values() for name in m.presets} & set(method.presets)
    if taken or any(p.settings.get("method") != method.name for p in method.presets.values()):
        raise ValueError(f"{method.name}: presets must be new names ({taken or 'ok'}) and set method={method.name}")
    method = dataclasses.replace(method, settings=_with_role_settings(method.name, method.settings, method.roles))
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    _METHODS.pop(name, None)


def registered() -> dict[str, Method]:
    """The methods registered so far (all of them once c2f.heads is imported)."""
    return dict(_METHODS)
