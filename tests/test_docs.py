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

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
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


PLUGIN_SOURCES = [ROOT / "plugins", ROOT / "targets", ROOT / "examples"]


def _toolkit_imports(text: str) -> set[str]:
    """Every toolkit module a piece of Python imports (from toolkit.X import ... / import toolkit.X)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "toolkit":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "toolkit")
    return found


def _python_blocks(markdown: str) -> list[str]:
    import re

    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


@pytest.mark.parametrize("path", sorted(p for folder in PLUGIN_SOURCES for p in folder.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path):
    allowed = {"toolkit.api", "toolkit.testing"}
    assert _toolkit_imports(path.read_text(encoding="utf-8")) <= allowed, \
        f"{path.relative_to(ROOT)} imports toolkit internals: plugins may use only toolkit.api"


@pytest.mark.parametrize("doc", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_code_in_the_docs_compiles_and_imports_only_the_public_api(doc):
    for block in _python_blocks(doc.read_text(encoding="utf-8")):
        compile(block, str(doc), "exec")
        assert _toolkit_imports(block) <= {"toolkit.api", "toolkit.testing"}, (doc.name, block[:200])


def test_the_plugin_guide_covers_every_interface_of_the_public_api():
    import toolkit.api as api

    text = PLUGIN_GUIDE.read_text(encoding="utf-8")
    for name in ("ModelFormat", "Dataset", "Model", "Converter", "Quantizer", "Backend", "Session", "Runner",
                 "Availability", "PluginOption", "ConversionResult", "TrainingResult", "TensorSpec"):
        assert name in api.__all__
        assert f"`{name}`" in text or f"{name}(" in text, f"{name} is not explained in {PLUGIN_GUIDE.name}"


def test_every_public_name_exists():
    import toolkit.api as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing, missing


def test_the_documented_builtin_priorities_are_the_real_ones():
    from toolkit import plugins

    text = PLUGIN_GUIDE.read_text(encoding="utf-8")
    for backend in plugins.registries().backends:
        if backend.name in ("tflite", "onnxruntime", "keras", "reference"):
            assert f"`{backend.name}`" in text and str(backend.priority) in text
