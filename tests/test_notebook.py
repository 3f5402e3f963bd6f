"""notebooks/finetune.ipynb runs headless from top to bottom (nbclient, the python3 kernel of the
interpreter running pytest) and shows test metrics and a plot."""
from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "finetune.ipynb"


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def test_finetune_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STREAMGUARD_NOTEBOOK_JULIET", raising=False)  # the small embedded default
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any(c.cell_type == "markdown" for c in nb.cells)
    # "python3" is ipykernel's kernel; jupyter_client starts it with this very interpreter (sys.executable).
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    printed = "\n".join(_stdout(c) for c in code)

    assert "data: embedded synthetic corpus" in printed
    assert "split sizes: {'train': 320, 'val': 40, 'test': 40}" in printed
    metrics = dict(re.findall(r"^(test/\w+): (\d+\.\d{4})$", printed, flags=re.M))
    assert set(metrics) == {"test/accuracy", "test/precision", "test/recall", "test/f1", "test/auroc"}
    assert all(0.0 <= float(v) <= 1.0 for v in metrics.values())
    # 3 epochs x 10 train batches logged every step; PR curve over the whole 40-function test split
    assert "plotted 30 loss points and a PR curve over 40 test functions" in printed

    images = [o.data["image/png"] for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    png = base64.b64decode(images[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a real two-panel figure, not a stub
