"""Options defined once: the type, default and allowed values of every option of a component.

A component (the trainer, a datamodule, a callback, the logger, a task) lists its options
as a dataclass of ``option(...)`` fields in torch-free code. The same dataclass serves three
readers, so an option is never written twice:

- the component's constructor builds it (``Trainer(max_epochs=0)`` fails on the rule);
- Hydra's compose-time schema is made from it (``expkit.config.schema``): typos and wrong
  types fail while composing, before torch is imported;
- the config checks run its rules on the composed config (``expkit.config.checks``), so an
  out-of-range value fails before anything is built, as one line.

Torch-free and Hydra-free: the config side imports it before torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Mapping

from expkit.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What values an option allows: a test and the words that say it (``must be ...``)."""

    test: Callable[[Any], bool]
    text: str


def option(default: Any, rule: Rule | None = None, doc: str = "") -> Any:
    """A dataclass field with its rule (``None``: any value of the annotated type) and a doc line."""
    metadata = {"rule": rule, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= minimum, f"must be an integer >= {minimum}")


def number(minimum: float, exclusive: bool = False, maximum: float | None = None) -> Rule:
    """A finite number in a range (``inf`` and ``nan`` are never allowed)."""
    above = (lambda v: v > minimum) if exclusive else (lambda v: v >= minimum)
    words = f"{'>' if exclusive else '>='} {minimum:g}" + (f" and <= {maximum:g}" if maximum is not None else "")
    return Rule(lambda v: _is_number(v) and above(v) and (maximum is None or v <= maximum),
                f"must be a finite number {words}")


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v: v in choices, f"must be one of {', '.join(str(c) for c in choices)}")


def optional(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.test(v), f"must be null or {rule.text.removeprefix('must be ')}")


#: ``limit_*_batches``: all (null), a fraction of the batches, or a number of batches.
LIMIT = Rule(lambda v: v is None or (_is_number(v) and v > 0 and (_is_int(v) or v <= 1)),
             "must be null, a fraction in (0, 1] or a whole number of batches >= 1")
MODE = one_of("min", "max")


class Options:
    """Base of the option dataclasses: every field is checked against its rule when built."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(f, getattr(self, f.name), f.name)

    @classmethod
    def from_kwargs(cls, owner: str, values: Mapping[str, Any]) -> "Options":
        """Build from keyword arguments; an unknown name is one line naming the close match."""
        check_names(cls, values.keys(), owner)
        return cls(**values)


def check_value(f: dataclasses.Field, value: Any, key: str) -> None:
    rule = f.metadata.get("rule")
    if rule is not None and not rule.test(value):
        raise ConfigError(f"{key}={value!r}: {rule.text}")


def check_names(cls: type, names: Iterable[str], owner: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{owner}{name}: not an option of {owner.rstrip('.') or cls.__name__}{hint}; "
                              f"allowed: {', '.join(sorted(known))}")


def check_node(cls: type, names: Iterable[str], value_of: Callable[[str], Any], prefix: str) -> None:
    """Check a config node (``prefix`` like ``trainer.``) against ``cls``: its option names, then
    the rules. ``value_of(name)`` is only asked for options that have a rule (so an interpolation
    that resolves only inside a run, like a path, is never resolved here)."""
    names = [str(n) for n in names if not str(n).startswith("_")]
    check_names(cls, names, prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        if fields[name].metadata.get("rule") is not None:
            check_value(fields[name], value_of(name), f"{prefix}{name}")


def defaults(cls: type) -> dict[str, Any]:
    """Every option's default value."""
    return {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            for f in dataclasses.fields(cls)}


def signature(cls: type, *leading: inspect.Parameter) -> inspect.Signature:
    """A constructor signature that lists ``cls``'s options as keyword arguments with their
    defaults, after ``leading`` (``inspect.signature(Trainer)`` shows every option)."""
    hints = typing.get_type_hints(cls)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *leading]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=hints[name])
               for name, value in defaults(cls).items()]
    return inspect.Signature(params)


class Configurable:
    """A component whose keyword options are the fields of its ``Options`` dataclass.

    ``configure(options)`` checks and keeps them as ``self.opts``; the constructor's
    signature (``inspect.signature``) lists every option with its default.
    """

    Options: ClassVar[type]

    def configure(self, options: Mapping[str, Any]) -> Any:
        self.opts = self.Options.from_kwargs(f"{type(self).__name__}.", options)
        return self.opts

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None and "Options" in cls.__dict__:  # new options, inherited constructor: give it its own
            inherited = super(cls, cls).__init__

            def init(self: Any, *args: Any, **options: Any) -> None:
                inherited(self, *args, **options)

            init.__doc__, init.__qualname__ = inherited.__doc__, f"{cls.__qualname__}.__init__"
            leading = [p for p in inspect.signature(inherited).parameters.values() if p.kind is not p.KEYWORD_ONLY]
            init.__signature__ = inspect.Signature(leading)  # the parent's options drop out; this class's come in
            cls.__init__ = init
        if init is not None and "Options" in dir(cls):
            own = [p for p in list(inspect.signature(init).parameters.values())[1:] if p.kind is not p.VAR_KEYWORD]
            init.__signature__ = signature(cls.Options, *own)
