"""Plugin options: what a converter, quantizer or backend declares (PluginOption), parsed from `-o key=value`,
validated, typed and filled with defaults before the plugin sees them."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .errors import UnknownNameError, UsageError
from .interfaces import PluginOption

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_pairs(items: Iterable[str], flag: str = "-o", example: str = "threads=2") -> dict[str, str]:
    """`-o key=value` items (or another flag's) as a dict; a malformed or repeated key is refused."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag} '{item}' is not KEY=VALUE", f"Write it like {flag} {example}")
        if key in out:
            raise UsageError(f"{flag} gives '{key}' twice", "Give each option once")
        out[key] = value
    return out


def convert_value(option: PluginOption, value: Any, owner: str) -> Any:
    """A value from the command line (a string) or the Python API, as the option's type; refused when it is not."""
    try:
        if isinstance(value, option.type) and not (option.type is int and isinstance(value, bool)):
            typed: Any = value
        elif not isinstance(value, str):
            raise ValueError
        elif option.type is bool:
            low = value.strip().lower()
            if low not in _TRUE + _FALSE:
                raise ValueError
            typed = low in _TRUE
        else:
            typed = option.type(value.strip())
    except (TypeError, ValueError):
        article = "an" if option.type.__name__[0] in "aeiou" else "a"
        raise UsageError(f"option {option.name}={value!r} of {owner} is not {article} {option.type.__name__}",
                         f"{option.name}: {option.help or option.type.__name__}") from None
    if option.choices and str(typed) not in option.choices:
        raise UsageError(f"option {option.name}={value!r} of {owner} is not one of {', '.join(option.choices)}")
    return typed


def resolve_options(item: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` checked against `item.options`: unknown keys get a suggestion; defaults fill the rest."""
    declared = {o.name: o for o in getattr(item, "options", ())}
    owner = f"{_kind(item)} {item.name}"
    for key in given:
        if key not in declared:
            if not declared:
                raise UsageError(f"{owner} takes no -o options (got '{key}')", "Drop the -o option")
            raise UnknownNameError(f"option of {owner}", key, declared)
    out = {name: opt.default for name, opt in declared.items()}
    for key, value in given.items():
        out[key] = convert_value(declared[key], value, owner)
    return out


def _kind(item: Any) -> str:
    from .registry import KINDS

    for kind in KINDS:
        if isinstance(item, kind.interface):
            return kind.singular
    return "plugin"


def describe_options(item: Any) -> list[dict[str, Any]]:
    return [{"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help,
             "choices": list(o.choices)} for o in getattr(item, "options", ())]


def split_backend_options(pairs: dict[str, str], backends: list[str]) -> dict[str, dict[str, str]]:
    """`-o KEY=VALUE` for each backend of the run (`backends`): `-o tflite.xnnpack=false` targets one backend; a
    plain key goes to every backend of the run that declares it. A key no backend of the run takes is refused."""
    from . import plugins

    regs = plugins.registries().backends
    per: dict[str, dict[str, str]] = {}
    for key, value in pairs.items():
        owner, dot, option = key.rpartition(".")
        if dot:
            if owner not in regs:
                raise UnknownNameError("backend", owner, regs.names())
            if owner not in backends:
                raise UsageError(f"-o {key}: backend {owner} is not in this run (it runs {', '.join(backends)})",
                                 "Drop the option, or add the backend with --backend")
            targets = [owner]
        else:
            option = key
            targets = [b for b in backends if any(o.name == option for o in regs.get(b).options)]
            if not targets:
                declared = sorted({f"{b}.{o.name}" for b in backends for o in regs.get(b).options})
                raise UsageError(f"no backend in this run ({', '.join(backends)}) has the option '{key}'",
                                 f"Their options: {', '.join(declared) or 'none'}")
        for name in targets:
            per.setdefault(name, {})[option] = value
    return per
