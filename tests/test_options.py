"""Every option is defined once: the registered schemas, the components' constructors and the
YAML of each group's default option all agree with the components' ``Options`` dataclasses,
and a component added in one file is checked by its own ``Options`` (discovered, not listed)."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import ROOT

from expkit.config.checks import options_of, validate
from expkit.config.schema import COMPONENTS, SCHEMAS
from expkit.errors import ConfigError
from expkit.options import defaults

CONF = ROOT / "conf"


def _target(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_each_schema_is_its_components_options(name: str):
    target, options, partial = COMPONENTS[name]
    schema = {f.name: f for f in dataclasses.fields(SCHEMAS[name])}
    expected = ["_target_", *(["_partial_"] if partial else []), *(f.name for f in dataclasses.fields(options))]
    assert list(schema) == expected
    for option, default in defaults(options).items():
        field = schema[option]
        schema_default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert schema_default == default, (name, option)
    cls = _target(target)
    signature = inspect.signature(cls)
    if target.startswith("expkit."):  # expkit's own: the class uses exactly these options
        assert cls.Options is options
        for option, default in defaults(options).items():
            assert signature.parameters[option].default == default, (target, option)
    else:  # torch's: our defaults are torch's own wherever torch has one
        for option, default in defaults(options).items():
            parameter = signature.parameters[option]
            if parameter.default is not inspect.Parameter.empty:
                assert parameter.default == (tuple(default) if isinstance(default, list) else default), option


def _default_options() -> dict[str, list[Path]]:
    """Each group's default option file, read from conf/train.yaml's defaults list."""
    chosen = {}
    for entry in yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            (group, option), = entry.items()
            if option and (CONF / group / f"{option}.yaml").is_file():
                chosen[group] = CONF / group / f"{option}.yaml"
    return chosen


def _component_nodes(tree, path: str = ""):
    if isinstance(tree, dict):
        if "_target_" in tree:
            yield path, tree
        for key, value in tree.items():
            if key != "defaults":
                yield from _component_nodes(value, f"{path}{key}.")


def test_default_options_write_only_the_components_own_defaults():
    files = _default_options()
    assert {"task", "data", "model", "optimizer", "trainer", "callbacks", "logger"} <= files.keys()
    nodes = []
    for group, file in files.items():
        nodes += [(f"{group}.{path}", node) for path, node in _component_nodes(yaml.safe_load(file.read_text()))]
    checked = 0
    for path, node in nodes:
        options = options_of(OmegaConf.create(node), path)
        if options is None or not node["_target_"].startswith("expkit."):
            continue  # a model (no options) or a torch class (its values are the experiment's choice)
        for key, value in node.items():
            if key.startswith("_") or key == "defaults" or (isinstance(value, str) and "${" in value):
                continue  # interpolations are allowed
            assert value == defaults(options)[key], f"{path}{key}: YAML says {value!r}, the component {defaults(options)[key]!r}"
            checked += 1
    assert checked >= 30  # trainer, data, every callback, the logger and the task were read


def test_every_option_file_names_only_known_options():
    """Every component node in every YAML file under conf/ (experiments and debug overlays too)."""
    for file in sorted(CONF.rglob("*.yaml")):
        tree = yaml.safe_load(file.read_text()) or {}
        for path, node in _component_nodes(tree):
            if "${" in str(node["_target_"]):
                continue
            options = options_of(OmegaConf.create(node), path)
            if options is not None:
                unknown = set(node) - {"_target_", "_partial_", "defaults"} - {f.name for f in dataclasses.fields(options)}
                assert not unknown, f"{file}: {path} has {unknown}"


def test_a_component_added_in_one_file_is_checked_by_its_own_options(tmp_path: Path, monkeypatch):
    (tmp_path / "windows_data.py").write_text('''
from dataclasses import dataclass
from expkit.data import DataModule
from expkit.data.options import DataOptions
from expkit.options import integer, option

@dataclass
class WindowOptions(DataOptions):
    window: int = option(16, integer(1), "characters per sample")

class WindowData(DataModule):
    Options = WindowOptions
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    good = OmegaConf.create({"data": {"_target_": "windows_data.WindowData", "window": 8, "batch_size": 4}})
    validate(good)
    with pytest.raises(ConfigError, match=r"^data\.window=0: must be an integer >= 1$"):
        validate(OmegaConf.create({"data": {"_target_": "windows_data.WindowData", "window": 0}}))
    with pytest.raises(ConfigError, match=r"^data\.windw: not an option of data \(did you mean window\?\)"):
        validate(OmegaConf.create({"data": {"_target_": "windows_data.WindowData", "windw": 8}}))
    with pytest.raises(ConfigError, match=r"^data\._target_='windows_dta\.WindowData': no module named 'windows_dta'"):
        validate(OmegaConf.create({"data": {"_target_": "windows_dta.WindowData"}}))
    sys.modules.pop("windows_data", None)


def test_constructors_check_their_own_options():
    from expkit.callbacks import EarlyStopping, ModelCheckpoint
    from expkit.data import DigitsDataModule
    from expkit.engine import Trainer

    for build, message in ((lambda: Trainer(max_epochs=0), "max_epochs=0: must be an integer >= 1"),
                           (lambda: Trainer(max_epoch=3), "Trainer.max_epoch: not an option of Trainer"),
                           (lambda: EarlyStopping(patience=0), "patience=0: must be an integer >= 1"),
                           (lambda: ModelCheckpoint(mode="best"), "mode='best': must be one of min, max"),
                           (lambda: DigitsDataModule(loader="disk"), "loader='disk': must be one of auto")):
        with pytest.raises(ConfigError, match=message):
            build()
