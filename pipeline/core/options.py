"""Every option written once: a dataclass field carries its default, help, choices and bounds.

    batch_size: int = option(32, "Frames per backbone call.", minimum=1)

`validate(config)` (called from the dataclass's __post_init__) checks choices and bounds and
raises SettingsError naming the command-line flag; `click_options(Config)` turns the fields into
click options, so the command line only parses; `to_args(Config, values)` writes settings back
as flags (the report's commands for missing runs).

Flags: `field_name` -> `--field-name`; a bool -> `--field-name/--no-field-name`; a list -> a
repeatable option (its flag may be given, e.g. `backbones` -> `--backbone`); a tuple -> one
comma-separated value.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import click

from .errors import SettingsError

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, help: str = "", *, choices: Callable[[], list] | list | tuple | None = None,
           minimum: float | None = None, above: float | None = None, maximum: float | None = None,
           flag: str | None = None, cli: bool = True, kind: type | None = None, repeat: bool = False,
           what: str | None = None, aliases: tuple[str, ...] = (), variant: bool = False,
           required: bool = False) -> Any:
    """A dataclass field with what the command line and validation need.

    choices: the allowed values (or a function giving them, evaluated when asked);
    minimum / maximum: inclusive bounds, `above`: exclusive lower bound (also for each item of a
    tuple); flag: the command-line name when not derived from the field's; cli: False keeps the
    field off the command line; kind: the type of one value where the annotation says little;
    repeat: a list given by repeating the flag (implied by a list default; without a default, required);
    what: the subject of a validation message where it reads better than the flag ("learning rates");
    aliases: further spellings of the flag; variant: a run with another value is another variant of
    its method (the report's rows tell runs apart by these); required: the flag must be given although
    the field has a default (a default that keeps the dataclass's positional order)."""
    metadata = {"help": help, "choices": choices, "minimum": minimum, "above": above, "maximum": maximum,
                "flag": flag, "cli": cli, "kind": kind, "repeat": repeat or isinstance(default, list), "what": what,
                "aliases": aliases, "variant": variant, "required": required}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(field: dataclasses.Field) -> str:
    if field.metadata.get("flag"):
        return field.metadata["flag"]
    name = field.name.replace("_", "-")
    return f"--no-{name}" if field.default is True else f"--{name}"


def choices_of(field: dataclasses.Field) -> list | None:
    choices = field.metadata.get("choices")
    return list(choices()) if callable(choices) else (list(choices) if choices is not None else None)


def _check_value(field: dataclasses.Field, value) -> str | None:
    """What is wrong with one value of the field, or None."""
    meta = field.metadata
    choices = choices_of(field)
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))} (not {value!r})"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number (not {value})"
        if meta.get("minimum") is not None and value < meta["minimum"]:
            return f"must be >= {meta['minimum']} (not {value})"
        if meta.get("above") is not None and not value > meta["above"]:
            return f"must be > {meta['above']} (not {value})"
        if meta.get("maximum") is not None and value > meta["maximum"]:
            return f"must be <= {meta['maximum']} (not {value})"
    return None


def validate(config) -> None:
    """Check every field's choices and bounds, and that required ones are given; SettingsError names the flag."""
    for field in dataclasses.fields(config):
        if not field.metadata:
            continue
        value = getattr(config, field.name)
        if field.metadata.get("required") and value in (None, [], ""):
            raise SettingsError(f"give {flag_name(field)}")
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if item is None:
                continue
            problem = _check_value(field, item)
            if problem:
                flag = flag_name(field).replace('--no-', '--')
                what = field.metadata.get("what")
                raise SettingsError(f"{what} {problem} ({flag})" if what else f"{flag} {problem}")


def _tuple_parser(kind: type, length: int):
    def parse(ctx, param, value):
        if value is None or isinstance(value, tuple):
            return value
        try:
            parts = tuple(kind(v) for v in str(value).split(","))
        except ValueError:
            parts = ()
        if len(parts) != length:
            words = {2: "two", 3: "three", 4: "four"}
            raise click.BadParameter(f"{words.get(length, length)} comma-separated values")
        return parts
    return parse


def _click_option(field: dataclasses.Field, unset: bool = False, help_text: str | None = None):
    """The field's click option; `unset`: its default is None (not given), for options whose default
    depends on something else (a method's settings)."""
    meta, default = field.metadata, field.default
    flag, help_text = (flag_name(field), *meta.get("aliases", ())), help_text or meta.get("help", "")
    required = default is _MISSING and field.default_factory is _MISSING or meta.get("required", False)
    if unset:
        return _unset_option(field, flag, help_text)
    if isinstance(default, bool):
        name = field.name.replace("_", "-")
        return click.option(f"--{name}/--no-{name}", field.name, default=default, show_default=True, help=help_text)
    if meta.get("repeat"):                              # a list: repeat the option
        items = field.default_factory() if field.default_factory is not _MISSING else []
        defaults = {"default": tuple(items), "show_default": True} if items and not meta.get("required") else {}
        return click.option(*flag, field.name, multiple=True, required=required, type=meta.get("kind") or str,
                            help=help_text, callback=lambda ctx, param, value: list(value), **defaults)
    if isinstance(default, tuple):
        return click.option(*flag, field.name, default=",".join(map(str, default)), show_default=True,
                            callback=_tuple_parser(meta.get("kind") or type(default[0]), len(default)), help=help_text)
    choices = choices_of(field)
    kind = click.Choice([str(c) for c in choices]) if choices and all(isinstance(c, str) for c in choices) else (
        meta.get("kind") or (type(default) if default not in (None, _MISSING) else str))
    if required:            # no default at all: click (8.2+) treats an explicit None as a given value
        return click.option(*flag, field.name, required=True, type=kind, help=help_text)
    return click.option(*flag, field.name, default=default, show_default=default is not None, type=kind,
                        help=help_text)


def _unset_option(field: dataclasses.Field, flag: tuple[str, ...], help_text: str):
    meta, default = field.metadata, field.default
    if isinstance(default, bool):
        name = field.name.replace("_", "-")
        return click.option(f"--{name}/--no-{name}", field.name, default=None, help=help_text)
    if isinstance(default, tuple):
        return click.option(*flag, field.name, default=None, callback=_tuple_parser(meta.get("kind") or type(default[0]),
                                                                                  len(default)), help=help_text)
    choices = choices_of(field)
    kind = click.Choice([str(c) for c in choices]) if choices and all(isinstance(c, str) for c in choices) else (
        meta.get("kind") or (type(default) if default not in (None, _MISSING) else str))
    return click.option(*flag, field.name, default=None, type=kind, help=help_text)


def grouped_fields(groups: dict[str, type]) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Field name -> [(group label, field)] over several dataclasses (each method's settings), in the
    order first seen."""
    fields: dict[str, list] = {}
    for label, config_class in groups.items():
        for field in dataclasses.fields(config_class):
            if field.metadata and field.metadata.get("cli", True):
                fields.setdefault(field.name, []).append((label, field))
    return fields


def _merged_help(entries: list[tuple[str, dataclasses.Field]]) -> str:
    """One help text for a flag that several groups share: theirs, with each group's default."""
    by_text: dict[tuple, list[str]] = {}
    for label, field in entries:
        default = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
        by_text.setdefault((field.metadata.get("help", ""), str(default)), []).append(label)
    return "; ".join(f"{', '.join(labels)}: {text} (default {default})" for (text, default), labels in by_text.items())


def merged_click_options(groups: dict[str, type]):
    """A decorator adding one click option per field name found in any of the dataclasses (each
    method's settings), with no default of its own: a flag not given takes the default of the
    dataclass that is used. Fields of one name must be of one kind (a bool in one, a number in
    another would make one flag mean two things)."""
    def decorate(command):
        for name, entries in reversed(list(grouped_fields(groups).items())):
            kinds = {type(field.default) for _, field in entries}
            if len(kinds) > 1:
                raise TypeError(f"the settings field {name!r} has defaults of several types: {kinds}")
            command = _click_option(entries[0][1], unset=True, help_text=_merged_help(entries))(command)
        return command
    return decorate


def click_options(config_class, skip: tuple[str, ...] = (), unset: bool = False):
    """A decorator adding one click option per field of the dataclass (except `skip` and cli=False).
    unset: every option's value is None when its flag is not given (nothing is required), so that a
    config file or a preset can fill it before the dataclass's default does; the help shows the default."""
    def decorate(command):
        for field in reversed(dataclasses.fields(config_class)):
            if field.name in skip or not field.metadata.get("cli", True) or not field.metadata:
                continue
            help_text = field.metadata.get("help", "")
            if unset and field.default not in (None, _MISSING):
                shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
                help_text = f"{help_text} (default {shown})".strip()
            command = _click_option(field, unset=unset, help_text=help_text or None)(command)
        return command
    return decorate


def to_args(config_classes, values: dict) -> list[str]:
    """Settings as command-line arguments, e.g. {'gamma': 0.1, 'sync': False} -> ['--gamma', '0.1', '--no-sync'],
    for the fields of one dataclass or of several (a list)."""
    classes = config_classes if isinstance(config_classes, (list, tuple)) else [config_classes]
    fields = {f.name: f for config_class in classes for f in dataclasses.fields(config_class)}
    args = []
    for name, value in values.items():
        field = fields[name]
        if value is None:           # not given: the default
            continue
        if isinstance(field.default, bool):
            if value != field.default:
                name = field.name.replace("_", "-")
                args.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, (list, tuple)) and field.metadata.get("repeat"):
            for item in value:
                args += [flag_name(field), str(item)]
        elif isinstance(value, (list, tuple)):
            args += [flag_name(field), ",".join(map(str, value))]
        else:
            args += [flag_name(field), str(value)]
    return args
