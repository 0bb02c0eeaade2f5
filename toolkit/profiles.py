"""Device profiles: one TOML file per target, checked field by field on load.

The schema lives here, in one table, so that the loader, `toolkit targets show` and docs/targets.md agree. A bad
profile is refused with the file and the field named; profiles from TOOLKIT_TARGETS_PATH folders are read by the
core, after the plugins' own, and a user's profile may replace a shipped one of the same name.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import UsageError
from .interfaces import Target

PATH_ENV = "TOOLKIT_TARGETS_PATH"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")
CONNECTION_KINDS_BUILTIN = ("local", "ssh")


class ProfileError(UsageError):
    """A profile file that cannot be used: its file and field are in the message."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # how the docs describe it
    doc: str
    check: Callable[[Any], Any]  # returns the value to keep, or raises ValueError with what is wrong
    example: str = ""


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be text, got {_shown(v)}")
    return v


def _texts(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"must be a list of names, got {_shown(v)}")
    return list(v)


def _positive_int(v: Any) -> int:
    if type(v) is not int or v < 1:
        raise ValueError(f"must be a whole number of at least 1, got {_shown(v)}")
    return v


def _size_mb(v: Any) -> float:
    if type(v) not in (int, float) or not v > 0:
        raise ValueError(f"must be a number of MiB above 0 (0.5 for 512 KiB), got {_shown(v)}")
    return float(v)


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise ValueError(f"must be true or false, got {_shown(v)}")
    return v


def _name(v: Any) -> str:
    if not isinstance(v, str) or not NAME_RE.match(v):
        raise ValueError(f"must be lower-case letters, digits, '.', '_' or '-' (at most 64), got {_shown(v)}")
    return v


def _runtimes(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValueError('must be a table of distribution = "version requirement", e.g. { "onnxruntime" = ">=1.20" }')
    return dict(v)


def _precisions(v: Any) -> list[str]:
    items = _texts(v)
    for p in items:
        if p not in PRECISIONS:
            close = difflib.get_close_matches(p, PRECISIONS, n=1)
            raise ValueError(f"has '{p}', which is not a precision" + (f" (did you mean '{close[0]}'?)" if close else "")
                             + f"; precisions: {', '.join(PRECISIONS)}")
    return items


def _ops(v: Any) -> dict[str, list[str]]:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise ValueError('must be a table of format = [operator names], e.g. { tflite = ["CONV_2D", "SOFTMAX"] }')
    return {k: _texts(x) for k, x in v.items()}


def _latency(v: Any) -> float:
    if type(v) not in (int, float) or not v > 0:
        raise ValueError(f"must be a number of milliseconds above 0, got {_shown(v)}")
    return float(v)


def _connection(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError('must be a table, e.g. { kind = "ssh", host = "raspberrypi.local", user = "pi" }')
    known = {"kind": _name, "host": _text, "user": _text, "port": _port, "ssh_config": _text, "url": _text}
    out = {}
    for key, value in v.items():
        if key not in known:
            raise ValueError(f"has an unknown key '{key}'{_did_you_mean(key, known)}; keys: {', '.join(known)}")
        try:
            out[key] = known[key](value)
        except ValueError as e:
            raise ValueError(f"key '{key}' {e}") from None
    out.setdefault("kind", "local")
    if out["kind"] == "ssh" and not out.get("host"):
        raise ValueError("of kind ssh needs a host (a name, an address or a Host alias from your ssh config)")
    return out


def _port(v: Any) -> int:
    if type(v) is not int or not 0 < v < 65536:
        raise ValueError(f"must be a port number (1-65535), got {_shown(v)}")
    return v


FIELDS: tuple[Field, ...] = (
    Field("name", "text", "The target's name, as `--target` takes it. Lower case, digits, `.`, `_`, `-`.", _name,
          '"raspberry-pi-4"'),
    Field("description", "text", "One line for `toolkit targets list`.", _text),
    Field("arch", "text", "Machine architecture as `uname -m` prints it: aarch64, x86_64, armv7l, or a "
          "microcontroller core (cortex-m7).", _text, '"aarch64"'),
    Field("cpu", "text", "The CPU, e.g. \"4x Cortex-A72 @ 1.8 GHz\".", _text),
    Field("isa", "list", "ISA features its runtimes use: neon, asimddp, i8mm, avx2, avx512_vnni, ...", _texts,
          '["neon", "asimd"]'),
    Field("cores", "integer", "CPU cores.", _positive_int, "4"),
    Field("ram_mb", "number", "RAM in MiB (0.5 for 512 KiB). The check compares the model's estimated memory "
          "with it.", _size_mb, "4096"),
    Field("storage_mb", "number", "Storage (disk, SD card or flash) in MiB. The check compares the model file's "
          "size with it.", _size_mb, "32768"),
    Field("accelerators", "list", "Accelerators on the board: gpu, cuda, tensorrt, edgetpu, npu, dsp.", _texts),
    Field("runtimes", "table", "Runtimes installed on it, distribution = version requirement.", _runtimes,
          '{ "ai-edge-litert" = ">=2.3" }'),
    Field("formats", "list", "Model formats its runtimes load (tflite, onnx). Empty: any.", _texts, '["tflite"]'),
    Field("delegates", "list", "Delegates or execution providers besides the CPU's: xnnpack, gpu, nnapi, "
          "edgetpu, cuda, tensorrt.", _texts),
    Field("precisions", "list", f"Precisions it runs ({', '.join(PRECISIONS)}). Empty: any.", _precisions,
          '["int8"]'),
    Field("ops", "table", "Per format, the only operators its runtime or delegate runs. Absent: any.", _ops,
          '{ tflite = ["CONV_2D", "FULLY_CONNECTED"] }'),
    Field("weights_in_ram", "bool", "false where weights stay in flash and RAM holds only the activations "
          "(TFLite Micro). Default true.", _bool),
    Field("dynamic_shapes", "bool", "false where the runtime cannot resize inputs (every dimension must be "
          "fixed). Default true.", _bool),
    Field("latency_budget_ms", "number", "Default latency budget for `toolkit targets check --results`.", _latency),
    Field("connection", "table", "How runners reach it: kind (local, ssh, or a plugin's runner), host, user, "
          "port, ssh_config.", _connection, '{ kind = "ssh", host = "raspberrypi.local", user = "pi" }'),
    Field("python", "text", "The device's Python, for runners that measure there (a venv's bin/python). Empty "
          "where no Python runs (a microcontroller). Default python3.", _text, '"/home/pi/venv/bin/python"'),
)
_BY_NAME = {f.name: f for f in FIELDS}
REQUIRED = ("name", "arch", "ram_mb")


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _did_you_mean(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def target_from_dict(data: Any, source: str = "profile") -> Target:
    """A Target from a profile's table, every field checked; ProfileError names `source` and the field."""
    hint = "See docs/targets.md for the profile fields"
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a table of fields", hint)
    values: dict[str, Any] = {}
    for key, value in data.items():
        spec = _BY_NAME.get(key)
        if spec is None:
            raise ProfileError(f"{source}: unknown field '{key}'{_did_you_mean(key, _BY_NAME)}",
                               f"Fields: {', '.join(_BY_NAME)}")
        try:
            values[key] = spec.check(value)
        except ValueError as e:
            raise ProfileError(f"{source}: field '{key}' {e}", hint) from None
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ProfileError(f"{source}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}", hint)
    return Target(**values, source=source)


def load_profile(path: Path) -> Target:
    """One profile file, checked. Its name must match the file's (raspberry-pi-4.toml holds raspberry-pi-4)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML ({e})", "Fix the syntax; see docs/targets.md") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text", "Save the profile as UTF-8") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot be read ({e.strerror or type(e).__name__})",
                           "Check the file and its permissions") from None
    target = target_from_dict(data, str(path))
    if target.name != path.stem:
        raise ProfileError(f"{path}: field 'name' is '{target.name}', but the file is named {path.name}",
                           f"Name the file {target.name}.toml, or set name = \"{path.stem}\"")
    return target


def profiles_in(folder: Path) -> list[Target]:
    """Every *.toml profile in `folder`, in name order."""
    return [load_profile(p) for p in sorted(folder.glob("*.toml"))]


def user_profile_dirs() -> list[Path]:
    """The folders in TOOLKIT_TARGETS_PATH (os.pathsep-separated), each checked to exist."""
    raw = os.environ.get(PATH_ENV, "")
    dirs = []
    for part in raw.split(os.pathsep):
        if not part:
            continue
        folder = Path(part).expanduser()
        if not folder.is_dir():
            raise ProfileError(f"{PATH_ENV} names '{part}', which is not a folder",
                               "Point it at folders of .toml profiles, separated by ':'")
        dirs.append(folder)
    return dirs


def user_profiles() -> list[Target]:
    return [t for folder in user_profile_dirs() for t in profiles_in(folder)]


def target_from_url(url: str) -> Target:
    """An ad-hoc target for `--target ssh://[user@]host[:port]` (or another runner's scheme://...): only its
    connection is known, so checks that need the board's RAM or runtimes say they cannot be made."""
    from urllib.parse import urlsplit

    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()  # URL schemes are case-insensitive
    url = f"{scheme}://{rest}"
    if not NAME_RE.match(scheme) or not rest:
        raise UsageError(f"'{url}' is not a target URL", "Write ssh://[user@]host[:port], or a profile's name")
    connection: dict[str, Any] = {"kind": scheme, "url": url}
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"'{url}' is not a valid target URL ({e})", "Write ssh://[user@]host[:port]") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise UsageError(f"'{url}' has parts a target URL cannot have (a path, a query or a password)",
                         "Write ssh://[user@]host[:port]; keys, not passwords, log you in")
    if not parts.hostname:
        raise UsageError(f"'{url}' names no host", "Write ssh://[user@]host[:port]")
    if port == 0:
        raise UsageError(f"'{url}' has port 0", "Give a port number (1-65535), or none for the default")
    if "@" in parts.netloc and not parts.username:
        raise UsageError(f"'{url}' has an empty user name", "Write ssh://user@host, or leave the user out")
    if re.search(r"[\s'\"`$;&|<>\\]", parts.netloc):
        raise UsageError(f"'{url}' has characters a host or user name cannot have", "Write ssh://[user@]host[:port]")
    # urlsplit lower-cases the host; a Host alias in an ssh config is case-sensitive, so keep it as written.
    host = parts.netloc.rpartition("@")[2]
    if port is not None:
        host = host.rsplit(":", 1)[0]
    connection["host"] = host.strip("[]")
    if parts.username:
        connection["user"] = parts.username
    if port is not None:
        connection["port"] = port
    return Target(name=url, description=f"{connection['host']} over {scheme}", connection=connection, python="python3",
                  source="URL")
