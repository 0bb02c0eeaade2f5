"""Write docs/reference-conformance.md: every ONNX node test case (onnx.backend.test.case.node) of every operator
the reference backend implements, run through the backend and held to the expected outputs ONNX ships.

    python docs/gen_conformance.py          # rewrite docs/reference-conformance.md
    python docs/gen_conformance.py --check  # exit 1 if it is stale (what tests/test_reference_conformance.py checks)

A case counts for each implemented operator its graph uses. Its outcome is one of: passed; refused (the backend
says it has no kernel for that use, with the kernel's words: never a guess); wrong (an output that differs from
ONNX's, by ONNX's own backend-test rules); error (any other exception, or an error that is not a refusal: a bug).
Cases that also need an operator the backend does not implement are not run, and are counted by that operator.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

CONFORMANCE_MD = Path(__file__).with_name("reference-conformance.md")
STATUSES = ("passed", "refused", "wrong", "error")
# How the backend words a refusal: an operator it does not implement, or a use of one its kernel does not cover.
REFUSALS = ("does not implement", "no kernel for this use of")


@dataclass(frozen=True)
class Outcome:
    case: str
    opset: int
    status: str  # one of STATUSES
    reason: str = ""


def collect_cases() -> list[Any]:
    """ONNX's node test cases, made by running their export code (about 5-10 s: call it once)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return collect_testcases(None)


def _op_types(case: Any) -> set[str]:
    return {n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in case.model.graph.node}


def _opset(case: Any) -> int:
    return next((o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _mismatch(got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """Why `got` is not `want` by onnx.backend.test.runner's rules (same shape, same dtype, allclose), or None."""
    got = np.asarray(got) if isinstance(got, np.generic) else got  # a 0-d output some cases store as a scalar
    want = np.asarray(want) if isinstance(want, np.generic) else want
    if not isinstance(got, np.ndarray) or not isinstance(want, np.ndarray):
        return None if isinstance(got, type(want)) and np.array_equal(got, want) else \
            f"wrong result: {type(got).__name__} where ONNX has {type(want).__name__}"
    if got.shape != want.shape:
        return f"wrong shape: {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"wrong dtype: {got.dtype}, expected {want.dtype}"
    if want.dtype == object or want.dtype.kind in "SU":  # strings
        return None if np.array_equal(got, want) else "wrong result: values differ"
    # ml_dtypes' types (bfloat16, float8, int4...) compare as float32, exactly; bfloat16 within two of its ULPs
    if want.dtype.name == "bfloat16":
        rtol = max(rtol, 2 ** -6)
    g, w = got.astype(np.float64), want.astype(np.float64)
    if np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
        return None
    both_nan = np.isnan(g) & np.isnan(w)
    with np.errstate(invalid="ignore"):
        err = np.where(both_nan, 0.0, np.abs(g - w))
    worst = np.nanmax(np.where(np.isnan(err), np.inf, err))
    return f"wrong result: max abs err {worst:.3g}"


def _value(x: Any) -> Any:
    """A case's input or expected output as numpy: cases of the newer element types store TensorProtos, which
    ONNX's runner reads with numpy_helper, as here."""
    from onnx import numpy_helper

    if hasattr(x, "data_type") and hasattr(x, "dims"):
        return numpy_helper.to_array(x)
    if hasattr(x, "elem_type") and hasattr(x, "tensor_values"):  # a SequenceProto
        return numpy_helper.to_list(x)
    if hasattr(x, "elem_type") and hasattr(x, "tensor_value"):  # an OptionalProto
        return numpy_helper.to_optional(x)
    return x


def run_case(case: Any, folder: Path) -> tuple[str, str]:
    """(status, reason) of one case through ReferenceBackend().load(...).run(...)."""
    import onnx

    from toolkit.api import Artifact, BackendOptions, ToolkitError
    from toolkit_reference.backend import ReferenceBackend

    path = folder / f"{case.name}.onnx"
    onnx.save(case.model, str(path))
    names_in = [i.name for i in case.model.graph.input]
    names_out = [o.name for o in case.model.graph.output]
    try:
        session = ReferenceBackend().load(Artifact.open(path), BackendOptions())
        for inputs, expected in case.data_sets:
            inputs, expected = [_value(x) for x in inputs], [_value(x) for x in expected]
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                outputs = session.run(dict(zip(names_in, inputs)))
            for name, want in zip(names_out, expected):
                why = _mismatch(outputs.get(name), want, case.rtol, case.atol)
                if why:
                    return "wrong", f"{why} (output '{name}')" if len(names_out) > 1 else why
    except ToolkitError as e:
        message = e.message.replace(f" (in '{path.name}')", "")
        if any(words in message for words in REFUSALS):
            return "refused", message.split(": ", 1)[1] if "no kernel for this use of" in message else message
        return "error", f"{type(e).__name__}: {message}"
    except Exception as e:  # noqa: BLE001 - a crash is a finding, reported with its type
        from toolkit.api import first_line

        return "error", f"{type(e).__name__}: {first_line(e)[:160]}"
    finally:
        path.unlink(missing_ok=True)
    return "passed", ""


def conformance(cases: Iterable[Any]) -> tuple[dict[str, list[Outcome]], dict[str, list[str]]]:
    """The outcomes per implemented operator, and the cases not run, per operator they need that is not."""
    from toolkit_reference.ops import OPS

    per_op: dict[str, list[Outcome]] = {op: [] for op in OPS}
    not_run: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        for case in sorted(cases, key=lambda c: c.name):
            ops = _op_types(case)
            claimed = sorted(ops & OPS.keys())
            if not claimed:
                continue
            missing = sorted(ops - OPS.keys())
            if missing:
                for op in missing:
                    not_run.setdefault(op, []).append(case.name)
                continue
            status, reason = run_case(case, Path(tmp))
            for op in claimed:
                per_op[op].append(Outcome(case.name, _opset(case), status, reason))
    return per_op, not_run


HEADER = """\
# Reference backend: ONNX conformance

<!-- Generated by docs/gen_conformance.py: do not edit by hand. After changing a kernel, run
     `python docs/gen_conformance.py`. -->

Every ONNX node test case (`onnx.backend.test.case.node.collect_testcases()`, onnx {onnx_version}) whose graph
uses an operator the reference backend implements, run through the backend (`ReferenceBackend().load(...).run(...)`)
and compared with the expected outputs ONNX ships, by the rules of ONNX's own backend test runner
(`onnx.backend.test.runner`): the same shape, the same dtype and `np.testing.assert_allclose` with the case's
tolerances (rtol 1e-3, atol 1e-7 for every case here unless the case sets others).

A case counts for every operator in its graph. **refused** means the backend declined with a clear message (the
kernel's `NotImplementedError`, which the backend reports as "no kernel for this use of OP: ..."; or a use of an
operator it rules out before running): the model is refused, never run wrongly. **wrong** (an output that
differs) and **error** (an exception, or an error other than a refusal) are bugs. The opsets are those of the
passing cases.
"""


def _opsets(outcomes: list[Outcome]) -> str:
    versions = sorted({o.opset for o in outcomes if o.status == "passed"})
    if not versions:
        return "-"
    return str(versions[0]) if versions[0] == versions[-1] else f"{versions[0]}-{versions[-1]}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(per_op: dict[str, list[Outcome]], not_run: dict[str, list[str]]) -> str:
    """The whole of docs/reference-conformance.md."""
    import onnx

    counted = {op: outs for op, outs in sorted(per_op.items())}
    distinct = {o.case: o.status for outs in counted.values() for o in outs}
    totals = {s: sum(1 for v in distinct.values() if v == s) for s in STATUSES}
    no_cases = [op for op, outs in counted.items() if not outs]
    lines = [HEADER.format(onnx_version=onnx.__version__)]
    lines.append(f"**Summary: {len(counted)} operators claimed, {len(distinct)} cases run: {totals['passed']} passed, "
                 f"{totals['refused']} refused, {totals['wrong']} wrong, {totals['error']} errors; "
                 f"{sum(1 for outs in counted.values() if outs and all(o.status == 'passed' for o in outs))} "
                 f"operators pass every case.**\n")
    lines += ["| operator | passed / cases | opsets | not passed: case, reason |", "|---|---|---|---|"]
    for op, outs in counted.items():
        if not outs:
            continue
        passed = sum(o.status == "passed" for o in outs)
        failing = "<br>".join(f"`{o.case}` {o.status}: {_cell(o.reason)}" for o in outs if o.status != "passed")
        lines.append(f"| {op} | {passed} / {len(outs)} | {_opsets(outs)} | {failing} |")
    if no_cases:
        lines += ["", "Implemented, with no ONNX node case that uses only implemented operators: "
                  + ", ".join(no_cases) + "."]
    if not_run:
        lines += ["", "## Cases not run", "",
                  "Cases that use an implemented operator but also one the backend does not implement (the backend "
                  "refuses the whole model, naming the operator): how many need each such operator.", "",
                  ", ".join(f"{op} {len(names)}" for op, names in sorted(not_run.items())) + "."]
    return "\n".join(lines).rstrip() + "\n"


def generate(cases: Iterable[Any] | None = None) -> str:
    return render(*conformance(collect_cases() if cases is None else cases))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helper beside this script
    from regenerate import main as regenerate

    return regenerate(CONFORMANCE_MD, generate, Path(__file__).name, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
