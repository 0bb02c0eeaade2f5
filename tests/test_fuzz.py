"""Mutated .tflite and .onnx files, and ONNX's own test models, through the toolkit's real code paths.

Whatever the file, the CLI's process either accepts it or refuses it with one bounded line, and a benchmark child
ends in a result, one bounded line, or a crash it contains: never a traceback, a message of many lines, a hang or
a dead CLI. The fuzzer and the harness live in tests/support (fuzz.py, fuzz_harness.py); tools/fuzz_report.py
runs the same over any number of models. Run with -s to see the tables of outcome classes.
"""

from __future__ import annotations

import collections

import onnx
import pytest

import fuzz
import fuzz_harness as harness
from conftest import run_cli
from fuzz_harness import CRASH, DEFECT, MODEL_FILE, OK, RUNTIME


def assert_no_defects(*groups: list[harness.Outcome]) -> None:
    found = [d for g in groups for d in harness.defects(g)]
    assert not found, f"{len(found)} defects:\n" + "\n".join(found[:20])


def show(title: str, columns: dict[str, list[harness.Outcome]]) -> None:
    print(f"\n{title}\n{harness.table(columns)}")


def by_backend(outcomes: list[harness.Outcome]) -> dict[str, list[harness.Outcome]]:
    groups = collections.defaultdict(list)
    for o in outcomes:
        groups[o.side].append(o)
    return dict(sorted(groups.items()))


def one_stderr_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def few_cases(tmp_path_factory) -> list[fuzz.Case]:
    return fuzz.make_cases(tmp_path_factory.mktemp("fuzz"), 40, seed=7)


# ---------------------------------------------------------------------------------------------- fast tier
def test_a_case_is_the_same_bytes_for_the_same_seed_and_index(tmp_path, few_cases):
    again = fuzz.make_cases(tmp_path, 10, seed=7)
    assert [c.path.read_bytes() for c in again] == [c.path.read_bytes() for c in few_cases[:10]]
    assert [c.mutation for c in again] == [c.mutation for c in few_cases[:10]]
    seeds = {c.seed_model: c.path.parent / "seeds" / c.seed_model for c in few_cases}
    assert all(c.path.read_bytes() != seeds[c.seed_model].read_bytes() for c in few_cases)  # each one mutated
    assert {c.fmt for c in few_cases} == {"onnx", "tflite"}


def test_the_flatbuffer_map_finds_the_tflite_structure(tmp_path):
    # Scalars at their default value (float32 is type 0) are not stored, so the two seeds together are checked.
    from toolkit.testing import TFLITE_FIXTURES, tiny_tflite_model

    maps = [fuzz.map_tflite(tiny_tflite_model(tmp_path, name).read_bytes()) for name in TFLITE_FIXTURES]
    scalars = {name for m in maps for name, _, _ in m.scalars}
    assert {"Tensor.type", "Operator.opcode_index", "OperatorCode.builtin_code", "Model.version"} <= scalars
    elements = {name for m in maps for name, _, _ in m.elements}
    assert {"Tensor.shape", "SubGraph.inputs", "Operator.inputs", "Quantization.zero_point"} <= elements
    assert all(len(m.tables) > 20 and m.buffers and m.vectors and m.offsets for m in maps)


def test_the_cli_process_accepts_or_refuses_mutated_models_in_one_line(few_cases):
    outcomes = [harness.parent_outcome(c.path)[0] for c in few_cases]
    show("parent side, 40 mutated models", {"parent": outcomes})
    assert_no_defects(outcomes)
    tally = harness.counts(outcomes)
    assert tally[OK] and tally[MODEL_FILE]


def test_benchmark_children_end_in_a_result_or_one_line(few_cases):
    pairs = []
    for c in few_cases:
        pairs += [(str(c.path), b) for b in harness.parent_outcome(c.path)[1]]
    outcomes = harness.runtime_outcomes(pairs[:12])
    show("runtime side, 12 pairs", by_backend(outcomes))
    assert_no_defects(outcomes)
    assert len(outcomes) == 12 and harness.counts(outcomes)[OK]


@pytest.mark.slow
def test_the_harness_reports_hangs_bugs_many_lines_and_crashes(tmp_path, monkeypatch):
    # Backends that misbehave on purpose: each must land in its class, or the fuzz tests could never fail.
    from toolkit.testing import tiny_onnx_model

    monkeypatch.setenv("TOOLKIT_PLUGIN_MODULES", "fuzz_probe_backends,segfault_backend")
    model = str(tiny_onnx_model(tmp_path / "tiny.onnx"))
    names = ["probe-hang", "probe-bug", "probe-multiline", "segfault", "onnxruntime"]
    got = {o.side: o for o in harness.runtime_outcomes([(model, n) for n in names], case_timeout_s=2)}
    assert got["probe-hang"].cls == DEFECT and got["probe-hang"].detail.startswith("hang")
    assert got["probe-bug"].cls == DEFECT and "uncaught KeyError" in got["probe-bug"].detail
    assert got["probe-multiline"].cls == DEFECT and "lines" in got["probe-multiline"].detail
    assert got["segfault"].cls == CRASH and got["segfault"].detail == "SIGSEGV while loading"
    assert got["onnxruntime"].cls == OK


def test_bench_of_a_truncated_tflite_is_one_line(tmp_path):
    from toolkit.testing import tiny_tflite_model

    bad = tmp_path / "cut.tflite"
    bad.write_bytes(tiny_tflite_model(tmp_path).read_bytes()[:900])
    proc = run_cli("bench", str(bad), "--runs", "3", "--warmup", "1", "--format", "json")
    assert proc.returncode == 2
    assert "cut.tflite on tflite: " in one_stderr_line(proc) and "is not a valid TFLite file" in proc.stderr


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_bench_of_an_onnx_graph_missing_a_node_is_one_line_from_the_child(tmp_path):
    from toolkit.testing import tiny_onnx_model

    model = onnx.load(str(tiny_onnx_model(tmp_path / "tiny.onnx")))
    del model.graph.node[1]  # the Add: Relu now reads a value nothing makes
    onnx.save(model, str(tmp_path / "holed.onnx"))
    proc = run_cli("bench", str(tmp_path / "holed.onnx"), "--backend", "onnxruntime", "--runs", "3", "--warmup", "1",
                   "--format", "json")
    assert proc.returncode == 2
    assert "holed.onnx on onnxruntime: onnxruntime cannot load 'holed.onnx'" in one_stderr_line(proc)


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_a_name_with_a_newline_is_shown_escaped_on_one_line(tmp_path):
    from toolkit.testing import tiny_onnx_model

    model = onnx.load(str(tiny_onnx_model(tmp_path / "tiny.onnx")))
    model.graph.output[0].name = "y\nError: forged"  # a name that would print as a second line
    onnx.save(model, str(tmp_path / "forged.onnx"))
    proc = run_cli("bench", str(tmp_path / "forged.onnx"), "--backend", "reference", "--runs", "3", "--warmup", "1",
                   "--format", "json")
    assert proc.returncode == 2
    assert "graph output 'y\\nError: forged' is produced by no node" in one_stderr_line(proc)


# ---------------------------------------------------------------------------------------------- slow tier
@pytest.mark.slow
def test_300_mutated_models_in_the_cli_process(tmp_path):
    cases = fuzz.make_cases(tmp_path, 300, seed=11)
    outcomes = [harness.parent_outcome(c.path)[0] for c in cases]
    by_format = collections.defaultdict(list)
    for c, o in zip(cases, outcomes):
        by_format[c.fmt].append(o)
    show("parent side, 300 mutated models", {**by_format, "all": outcomes})
    assert_no_defects(outcomes)
    for fmt, group in by_format.items():  # neither format's mutations are all refused, or all harmless
        tally = harness.counts(group)  # (ONNX's are mostly refused later, by the backends: protobuf parses them)
        assert tally[OK] >= 30 and tally[MODEL_FILE] >= 15, (fmt, tally)


@pytest.mark.slow
def test_150_mutated_model_and_backend_pairs_in_benchmark_children(tmp_path):
    cases = fuzz.make_cases(tmp_path, 160, seed=12)
    pairs = [(str(c.path), b) for c in cases for b in harness.parent_outcome(c.path)[1]][:150]
    outcomes = harness.runtime_outcomes(pairs)
    show("runtime side, 150 pairs", {**by_backend(outcomes), "all": outcomes})
    assert_no_defects(outcomes)
    assert len(outcomes) == 150
    assert {o.side for o in outcomes} == {"onnxruntime", "reference", "tflite"}
    tally = harness.counts(outcomes)
    assert tally[OK] >= 15 and tally[MODEL_FILE] >= 15 and tally[RUNTIME] >= 15, tally


@pytest.mark.slow
def test_onnx_node_test_models_on_every_onnx_backend(tmp_path):
    paths = fuzz.onnx_node_models(tmp_path, 60)
    parent, runtime = harness.run_cases(paths)
    show("ONNX's node test models (60)", {"parent": parent, **by_backend(runtime)})
    assert_no_defects(parent, runtime)
    ort = by_backend(runtime)["onnxruntime"]
    assert len(ort) == 60 and harness.counts(ort)[OK] >= 35  # most of ONNX's own models run on ONNX Runtime
    assert harness.counts(by_backend(runtime)["reference"])[OK] >= 3


@pytest.mark.slow
def test_the_cli_on_mutated_and_onnx_test_models(tmp_path):
    # The whole command, a fresh process per model: one labelled line per message, an exit code of 0, 1 or 2.
    cases = fuzz.make_cases(tmp_path / "fuzz", 6, seed=13)
    paths = [c.path for c in cases] + fuzz.onnx_node_models(tmp_path / "node", 3)
    outcomes = [harness.cli_outcome(p) for p in paths]
    show("toolkit bench, 9 models", {"cli": outcomes})
    assert_no_defects(outcomes)
    assert harness.counts(outcomes)[OK] >= 2
