"""The structure the code relies on: the extraction queue's whole-batch rule, options written once
(click options and validation from the dataclass, no default written twice), one registered record per
method, and the layering: the direction of imports between the packages, no import circle, no module
over 300 lines, no function over 60."""
from __future__ import annotations

import ast
import configparser
import dataclasses
import re

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from c2f import methods as registry
from c2f.config import TrainConfig
from conftest import REPO
from pipeline.frames import Chunk, FrameQueue
from pipeline.core.options import click_options, option, to_args, validate


def chunk(position: int, frames: int, last: bool = False) -> Chunk:
    return Chunk(position, np.arange(frames, dtype=np.float32) + 100 * position,
                 torch.zeros(frames, 2, 2, 3, dtype=torch.uint8), None, last)


def test_queue_hands_out_whole_batches_and_splits_at_the_boundary():
    queue = FrameQueue(batch_size=4)
    for c in (chunk(0, 5), chunk(0, 0, last=True), chunk(1, 7), chunk(2, 3, last=True)):
        queue.push(c)
    taken = queue.take()
    assert sum(len(c) for c in taken) == 12                      # 15 queued: three whole batches
    assert [(c.position, len(c), c.last) for c in taken] == [(0, 5, False), (0, 0, True), (1, 7, False)]
    assert queue.frames == 3 and queue.take() == []               # 3 < 4: nothing whole to compute
    queue.push(chunk(1, 2, last=True))                            # 5: one batch, split inside video 1's chunk
    first = queue.take()
    assert [(c.position, len(c), c.last) for c in first] == [(2, 3, True), (1, 1, False)]
    assert first[1].timestamps.tolist() == [100.0]
    rest = queue.take(final=True)
    assert [(c.position, len(c), c.last) for c in rest] == [(1, 1, True)] and queue.frames == 0


def test_queue_drops_a_failed_videos_frames():
    queue = FrameQueue(batch_size=4)
    queue.push(chunk(0, 3))
    queue.push(chunk(1, 2))
    queue.drop(0)
    assert queue.frames == 2 and queue.take(final=True)[0].position == 1


@dataclasses.dataclass
class Settings:
    name: str = option(help="A required name.")
    size: int = option(3, "A size.", minimum=1)
    rate: float = option(0.5, "A rate.", above=0, maximum=1)
    mode: str = option("a", "A mode.", choices=("a", "b"))
    pair: tuple[int, int] = option((1, 2), "Two numbers.")
    items: list[str] = option(["x"], "Repeatable.", flag="--item")
    loud: bool = option(False, "A flag.")
    keep: bool = option(True, "On by default.")

    def __post_init__(self):
        self.pair = tuple(self.pair)
        validate(self)


@click.command()
@click_options(Settings)
def settings_command(**options):
    click.echo(repr(Settings(**options)))


def test_options_are_written_once_in_the_dataclass():
    result = CliRunner().invoke(settings_command, ["--name", "n", "--size", "4", "--mode", "b", "--pair", "3,4",
                                                   "--item", "p", "--item", "q", "--loud", "--no-keep"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(Settings("n", 4, 0.5, "b", (3, 4), ["p", "q"], True, False))
    defaults = CliRunner().invoke(settings_command, ["--name", "n"])
    assert defaults.output.strip() == repr(Settings("n"))
    assert CliRunner().invoke(settings_command, []).exit_code == 2                  # --name is required
    assert "two comma-separated values" in CliRunner().invoke(settings_command, ["--name", "n", "--pair", "1"]).output
    with pytest.raises(ValueError, match=r"--size must be >= 1"):
        Settings("n", size=0)
    with pytest.raises(ValueError, match=r"--rate must be a finite number"):
        Settings("n", rate=float("nan"))
    with pytest.raises(ValueError, match=r"--mode must be one of a, b"):
        Settings("n", mode="c")
    assert to_args(Settings, {"size": 4, "pair": (3, 4), "items": ["p"], "keep": False, "loud": False}) == \
        ["--size", "4", "--pair", "3,4", "--item", "p", "--no-keep"]


def test_train_config_round_trips_through_its_generated_flags():
    """Every setting, shared or the method's, written as flags and parsed back gives the same config."""
    from c2f.cli import main
    command = main.get_command(None, "train-head")
    for cfg in (TrainConfig.of(method="liteeval", manifest="m.csv", cache="c", out="o", gamma=0.1, sync=False),
                TrainConfig.of(method="adafocus", manifest="m.csv", cache="c", out="o", stage_epochs=(1, 2, 3),
                               frames=7, reuse=False, stage_lrs=(0.1, 0.2, 0.3))):
        settings = cfg.to_dict()
        args = to_args([TrainConfig, cfg.record.settings], {k: v for k, v in settings.items() if k != "grad_clip"})
        parsed = {k: v for k, v in command.make_context("train-head", args).params.items() if v is not None}
        assert TrainConfig.from_dict(parsed, strict=True) == cfg


def test_a_registered_method_is_known_everywhere():
    """A new method is one record: its settings dataclass reaches the config, the flags and variant keys."""
    from c2f.config import variant_keys
    from c2f.heads import method, methods
    from c2f.heads.uniform import UniformHead

    @dataclasses.dataclass
    class ProbeSettings(registry.Settings):
        frames: int = option(3, "evenly spaced frames read per video", minimum=1, variant=True)
        probe_depth: int = option(2, "how deep it probes", minimum=1, variant=True)

    record = registry.register(registry.Method(
        "probe_only", UniformHead, ProbeSettings, {"fine": registry.Role("focus", "grid", "resnet50@224-grid7x128")},
        budgeted=True))
    try:
        assert "probe_only" in methods() and method("probe_only") is record
        cfg = TrainConfig.of(method="probe_only", manifest="m", cache="c", out="o", probe_depth=5)
        assert isinstance(cfg.method_settings, ProbeSettings) and cfg.method_settings.probe_depth == 5
        assert cfg.feature_sets() == {"fine": "resnet50@224-grid7x128"}
        assert "probe_depth" in variant_keys() and cfg.to_dict()["probe_depth"] == 5
        with pytest.raises(ValueError, match="registered twice"):
            registry.register(record)
    finally:
        registry.unregister("probe_only")
    with pytest.raises(ValueError, match="unknown method .probe_only."):
        TrainConfig.of(method="probe_only", manifest="m", cache="c", out="o")


COMMAND_LINE = REPO / "c2f" / "cli.py"      # only parsing, one function per command: exempt from the length rule


def _python_files():
    return sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "c2f").rglob("*.py"))


def _module_name(path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file, in functions too."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [a.name for a in node.names], node.lineno))
    return found


def _project_edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (a package's __init__ counts as the package)."""
    modules = {_module_name(p) for p in _python_files()}
    edges = {}
    for path in _python_files():
        targets = set()
        for base, names, _ in _imports(path):
            for candidate in [f"{base}.{n}" for n in names] + [base]:
                if candidate in modules:
                    targets.add(candidate)
                    break
        edges[_module_name(path)] = targets - {_module_name(path)}
    return edges


def test_nothing_imports_the_command_line():
    """Only `python -m c2f` (c2f/__main__.py) imports it; the package installs no top-level module
    (a `cli` of its own would clash with any other)."""
    for path in _python_files():
        if path not in (COMMAND_LINE, REPO / "c2f" / "__main__.py"):
            imported = [base for base, names, _ in _imports(path) if base == "c2f.cli" or base == "c2f" and "cli" in names]
            assert not imported, f"{path} imports the command line"
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert "py_modules" not in setup["options"]
    assert setup["options.entry_points"]["console_scripts"].split() == ["c2f", "=", "c2f.cli:main"]


def test_imports_run_in_one_direction():
    """Phase one never imports phase two; the kernel imports nothing else of the project; the building
    blocks only the registry, the data and the kernel, never a method; the heads (the methods) the blocks
    too; training, prediction and the report do not import
    each other; the demo is imported by nobody but the command line."""
    rules = {"pipeline.core": ("pipeline.core",),
             "pipeline": ("pipeline",),
             "c2f.blocks": ("c2f.blocks", "c2f.methods", "c2f.data", "pipeline.core"),
             "c2f.heads": ("c2f.heads", "c2f.blocks", "c2f.methods", "c2f.data", "pipeline.core", "pipeline.cache"),
             "c2f.training": ("c2f.training", "c2f.config", "c2f.data", "c2f.evaluate", "c2f.blocks", "c2f.heads",
                              "c2f.methods", "c2f.rundir", "=c2f", "pipeline.core", "pipeline.cache"),
             "c2f.report": ("c2f.report", "c2f.config", "c2f.blocks", "c2f.heads", "c2f.methods", "c2f.points",
                            "c2f.rundir", "pipeline.core", "pipeline.backbones"),
             "c2f.predict": ("c2f.predict", "c2f.data", "c2f.evaluate", "c2f.blocks", "c2f.heads", "c2f.methods",
                             "c2f.points", "c2f.rundir", "=c2f", "pipeline")}
    for module, targets in _project_edges().items():
        rule = next((r for r in rules if module == r or module.startswith(r + ".")), None)
        for target in targets:
            assert not target.startswith("c2f.demo") or module.startswith(("c2f.demo", "c2f.cli")), f"{module} imports {target}"
            if rule:
                allowed = rules[rule]
                # "=name": that module itself (c2f's __init__: the version), not its subpackages
                assert any(target == a.lstrip("=") or not a.startswith("=") and target.startswith(a + ".")
                           for a in allowed), f"{module} imports {target}"


def test_only_the_run_folder_module_reads_a_runs_files():
    """c2f/rundir.py alone joins a path to a run's file (`RUN / "curve.csv"`, `.file("curve.csv")`):
    the report, prediction and bench/ read a run through RunDir (config(), metrics(), table(), has())."""
    from c2f.rundir import RUN_FILES
    scripts = sorted((REPO / "bench").glob("*.py"))
    for path in [p for p in _python_files() + scripts if p != REPO / "c2f" / "rundir.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            joined = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and node.right
            asked = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "file"
                     and node.args and node.args[0])
            for name in (joined, asked):
                assert not (isinstance(name, ast.Constant) and name.value in RUN_FILES), \
                    f"{path.relative_to(REPO)}:{node.lineno} reads {name.value} itself"


def test_deployment_uses_phase_one_only_through_its_public_names():
    """c2f.predict takes from phase one (beyond the kernel and the cache contract) only what a module
    lists in its __all__."""
    import importlib
    for path in sorted((REPO / "c2f" / "predict").glob("*.py")):
        tree = ast.parse(path.read_text())
        aliases = {}
        for base, names, line in _imports(path):
            if not base.startswith("pipeline") or base.startswith(("pipeline.core", "pipeline.cache")):
                continue
            if base == "pipeline":
                aliases |= {a.asname or a.name: f"pipeline.{a.name}" for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.module == "pipeline" for a in node.names}
                continue
            public = importlib.import_module(base).__all__
            assert set(names) <= set(public), f"{path.name}:{line} takes {set(names) - set(public)} from {base}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                public = importlib.import_module(aliases[node.value.id]).__all__
                assert node.attr in public, f"{path.name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"


def test_no_import_circle():
    edges = _project_edges()
    state: dict[str, int] = {}

    def visit(module, trail):
        state[module] = 1
        for target in edges.get(module, ()):
            assert state.get(target) != 1, "import circle: " + " -> ".join(trail + [target])
            if target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in edges:
        if module not in state:
            visit(module, [module])


def test_no_module_is_longer_than_300_lines():
    for path in _python_files():
        if path == COMMAND_LINE:
            continue
        assert len(path.read_text().splitlines()) <= 300, f"{path.relative_to(REPO)} is over 300 lines"


def test_every_package_says_what_it_owns_and_may_import():
    for init in sorted((REPO / "pipeline").rglob("__init__.py")) + sorted((REPO / "c2f").rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(docstring) > 80, f"{init.relative_to(REPO)} has no docstring saying what the package owns"
    for init in [REPO / "pipeline" / "__init__.py", REPO / "pipeline" / "core" / "__init__.py"] + [
            REPO / "c2f" / name / "__init__.py" for name in ("blocks", "heads", "training", "predict", "report", "demo")]:
        assert "import" in ast.get_docstring(ast.parse(init.read_text())), f"{init}: say what it may import"


def _defaults_shown(command, config_class, unset: bool = False):
    """Each option's default is its field's: the same value, or (unset) None with the default in the help."""
    params = {p.name: p for p in command.params}
    for field in dataclasses.fields(config_class):
        if (not field.metadata.get("cli", True) or field.name not in params or field.default is dataclasses.MISSING
                or field.default is None):          # None: not given (its help says what happens then)
            continue
        param, default = params[field.name], field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        if unset or param.default is None and default is not None:
            assert param.default is None and f"default {shown}" in (param.help or ""), (command.name, field.name)
        else:
            assert param.default == shown, (command.name, field.name, param.default, shown)


def test_no_default_is_written_twice():
    """The command line's defaults are the dataclasses' (each written once, beside its setting): those
    of extract, finetune-backbone and predict, and for train-head the shared settings' and every
    method's (shown in the help, taken from the method's dataclass when the flag is not given)."""
    from c2f.cli import main
    from c2f.heads import methods
    from c2f.predict import PredictConfig
    from pipeline.extract import ExtractConfig
    from pipeline.finetune import FinetuneConfig
    for name, config_class in (("extract", ExtractConfig), ("finetune-backbone", FinetuneConfig),
                               ("predict", PredictConfig)):
        _defaults_shown(main.get_command(None, name), config_class)
    train = main.get_command(None, "train-head")
    _defaults_shown(train, TrainConfig, unset=True)
    params = {p.name: p for p in train.params}
    for record in methods().values():
        for field in dataclasses.fields(record.settings):
            shown = ",".join(map(str, field.default)) if isinstance(field.default, tuple) else field.default
            assert params[field.name].default is None and f"{record.name}" in params[field.name].help
            assert f"(default {shown})" in params[field.name].help, (record.name, field.name)
        parsed = train.make_context("train-head", ["--method", record.name, "--manifest", "m", "--cache", "c",
                                                   "--out", "o"]).params
        cfg = TrainConfig.from_dict({k: v for k, v in parsed.items() if v is not None}, strict=True)
        assert cfg.method_settings == record.settings()


def test_no_function_is_longer_than_60_lines():
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {length} lines"


def _every_command() -> dict[str, click.Command]:
    """Every command of the command line by its name (`manifest check`), the group itself as ''."""
    from c2f.cli import main
    found, stack = {}, [((), main)]
    while stack:
        path, command = stack.pop()
        found[" ".join(path)] = command
        if isinstance(command, click.Group):
            context = click.Context(command)
            stack += [(path + (name,), command.get_command(context, name)) for name in command.list_commands(context)]
    return found


def _help_shown(name: str, command: click.Command) -> dict[str, str]:
    """Each option's help text as `c2f NAME --help` shows it (click's `[default: ...]` included)."""
    context = click.Context(command, info_name=name)
    records = {p.name: p.get_help_record(context) for p in command.params if isinstance(p, click.Option)}
    return {option_name: record[1] for option_name, record in records.items() if record}


# how a help text states a default: click's `[default: X]`, `(default X)` / `(default: X ...` and
# `Default: X.`; any other "default" in a help is a failure (it would go unchecked)
STATED_DEFAULT = re.compile(r"\[default: (?P<click>[^\];]*)[\];]|\(default:? (?P<paren>[^;)]*)|\bDefault: (?P<said>[^;]*?)(?:\.(?:\s|$)|;|$)")


def _code_defaults(name: str, command: click.Command) -> dict[str, list]:
    """Each option's value in the code when it is not given: the settings dataclass's (after its
    __post_init__), each method's for train-head, the click option's own otherwise."""
    from c2f.demo.videos import DemoVideoConfig
    from c2f.heads import methods
    from c2f.predict import PredictConfig
    from pipeline.extract import ExtractConfig
    from pipeline.finetune import FinetuneConfig
    values = {p.name: [p.default] for p in command.params}
    built = {"extract": lambda: ExtractConfig(out="o", backbones=["resnet18@64"], videos=["v.mp4"]),
             "predict": lambda: PredictConfig(run="r", out="o", videos=["v.mp4"]),
             "finetune-backbone": lambda: FinetuneConfig(manifest="m", backbone="resnet18@64", out="o"),
             "demo-videos": lambda: DemoVideoConfig(out="o")}
    if name in built:
        config = built[name]()
        values |= {f.name: [getattr(config, f.name)] for f in dataclasses.fields(config) if f.name in values}
    if name == "train-head":
        values |= {f.name: [f.default] for f in dataclasses.fields(TrainConfig) if f.name in values}
        for record in methods().values():
            for f in dataclasses.fields(record.settings):
                values[f.name] = [v for v in values[f.name] if v is not None] + [f.default]
    return values


def _decided_when_run() -> dict[tuple[str, str], list[str]]:
    """The options whose default is decided when the command runs (by the device, the machine's cores,
    the cache, the steps): what their help must say, each phrase made from the code that decides."""
    from unittest import mock
    from c2f.config import MIN_EPOCHS
    from c2f.predict import PredictConfig
    from pipeline import batching
    from pipeline.core import devices
    from pipeline.extract import ExtractConfig
    on_cores = {}
    for count in (2, 64):
        with mock.patch.object(devices, "cores", return_value=count):
            on_cores[count] = devices.default_workers("cpu")
    assert on_cores[64] == 64 // 8, "the help says the CPU decodes with an eighth of the cores"
    extract_workers = ExtractConfig(out="o", backbones=["resnet18@64"], videos=["v.mp4"], device="cpu").workers
    assert PredictConfig(run="r", out="o", videos=["v.mp4"], device="cpu").workers == extract_workers
    return {("extract", "batch_size"): [f"{batching.CPU_BATCH} on the CPU", f"up to {batching.GPU_BATCH_MAX}",
                                        f"{batching.GPU_MEMORY_SHARE:.0%} of its free memory"],
            ("extract", "workers"): ["CPU an eighth", f"{on_cores[2]} on 2 cores"],
            ("predict", "workers"): ["as for c2f extract"],
            ("predict", "weights"): ["what the cache recorded"],
            ("train-head", "epochs"): [f"at least {MIN_EPOCHS}"]}


def _renderings(value, param: click.Parameter) -> set[str]:
    if isinstance(value, bool) and isinstance(param, click.Option) and param.secondary_opts:
        flags = {True: param.opts[0], False: param.secondary_opts[0]}
        return {str(value), flags[value].lstrip("-")}
    if isinstance(value, (list, tuple)):
        return {sep.join(map(str, value)) for sep in (",", ", ")}
    return {str(value), f"{value:g}"} if isinstance(value, float) else {str(value)}


def test_every_default_a_help_states_is_the_codes():
    """`c2f COMMAND --help` of every command: each default an option's help states (click's
    `[default: X]`, `(default X)`, `Default: X`) is the value the code takes when the option is not
    given; a default decided when the command runs is said in words made from the code that decides
    it (the CPU batch size from pipeline.batching, say), and no other number stands in such words."""
    decided = _decided_when_run()
    for name, command in _every_command().items():
        code = _code_defaults(name, command)
        params = {p.name: p for p in command.params}
        for option_name, text in _help_shown(name, command).items():
            stated = [next(g for g in m.groups() if g is not None) for m in STATED_DEFAULT.finditer(text)]
            assert len(stated) == len(re.findall(r"default", text, re.IGNORECASE)), \
                f"c2f {name} {params[option_name].opts[0]}: a default said in a way this test cannot read: {text!r}"
            for said in stated:
                where = f"c2f {name} {params[option_name].opts[0]}: help says default {said!r}"
                if (name, option_name) in decided:
                    missing = [phrase for phrase in decided[name, option_name] if phrase not in text]
                    assert not missing, f"{where}, but the code says {missing}"
                    continue
                values = [v for v in code[option_name] if v not in (None, [], ())]
                if not values:          # not given: decided when it runs, said in words without numbers
                    assert not re.search(r"\d", said), f"{where}: a number no code gives"
                    continue
                shown = set().union(*(_renderings(v, params[option_name]) for v in values))
                assert any(said == s or said.startswith(s + " ") for s in shown), f"{where}, the code {values}"
