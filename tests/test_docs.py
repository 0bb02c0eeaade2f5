"""The docs cannot drift from the code: the CLI reference is the real --help, every hook is documented, and
every command's help shows an example."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit import hookspecs
from toolkit.cli import BUILTIN_COMMANDS, cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
PLUGIN_GUIDE = DOCS / "writing-a-backend-plugin.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", DOCS / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hookspecs() -> list:
    """Every function in toolkit/hookspecs.py that pluggy's HookspecMarker marked."""
    marker = f"{hookspecs.hookspec.project_name}_spec"
    found = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, marker)]
    assert found, "no hookspecs found in toolkit/hookspecs.py"
    return found


def test_cli_reference_is_up_to_date():
    gen = _load_generator()
    expected = gen.render()
    current = gen.CLI_MD.read_text(encoding="utf-8") if gen.CLI_MD.exists() else ""
    assert current == expected, "docs/cli.md is stale: run `python docs/gen_cli_reference.py` and commit the result"


@pytest.mark.parametrize("spec", _hookspecs(), ids=lambda f: f.__name__)
def test_hookspec_has_docstring(spec):
    assert (spec.__doc__ or "").strip(), f"hookspec {spec.__name__} in toolkit/hookspecs.py has no docstring"


@pytest.mark.parametrize("spec", _hookspecs(), ids=lambda f: f.__name__)
def test_hookspec_is_documented_in_plugin_guide(spec):
    assert PLUGIN_GUIDE.exists(), f"{PLUGIN_GUIDE.relative_to(DOCS.parent)} is missing"
    text = PLUGIN_GUIDE.read_text(encoding="utf-8")
    assert f"`{spec.__name__}`" in text, (
        f"hook {spec.__name__} is not documented: mention `{spec.__name__}` (in backticks) in "
        f"docs/{PLUGIN_GUIDE.name}")


@pytest.mark.parametrize("name", list(BUILTIN_COMMANDS))
def test_command_help_has_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="toolkit")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`toolkit {name} --help` shows no Example section"


def test_top_level_help_lists_every_builtin_command():
    result = CliRunner().invoke(cli, ["--help"], prog_name="toolkit")
    assert result.exit_code == 0, result.output
    for name in BUILTIN_COMMANDS:
        assert f"  {name} " in result.output, f"{name} is missing from `toolkit --help`"
