"""examples/quickstart.ipynb executes top to bottom with nbclient; its figures are real
matplotlib PNG output and the progress widget is rendered."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_notebook_is_generated_from_tools():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import make_notebook

    on_disk = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    assert [c.source for c in on_disk.cells] == [c.source for c in make_notebook.build().cells], (
        "examples/quickstart.ipynb is stale: run `python tools/make_notebook.py`")


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    from tests.support import clusters

    clusters.shutdown_current()  # the kernel starts its own embedded Ray
    monkeypatch.setenv("AINATIVE_HOME", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3, "expected the loss curve, latency vs SLO and spend vs budget as PNG figures"
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), (
        "expected tqdm's progress widget in the training cell")
    texts = "".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "'succeeded'" in texts and "GPU-hours" in texts
    sources = "".join(c.source for c in nb.cells)
    # the three plots read the dashboard's JSON API: loss, latency vs SLO, spend vs budget
    assert "dash.job_events(" in sources and "dash.endpoints(" in sources and "dash.cost(" in sources
    assert 'spend["budgets"]' in sources and "samples[-1][3]" in sources
