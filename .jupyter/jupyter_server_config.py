"""JupyterLab's server settings for the kit; `make lab` puts this folder on JUPYTER_CONFIG_PATH.

The notebooks/*.ipynb files are the DVC stages' dependencies, stored without outputs. A notebook run by hand in
JupyterLab is saved (autosave included) in that stored form: no outputs, no execution counts, no run metadata (the
kernel's display name, language_info, cell timings), so a hand run changes neither `git status` nor `dvc status`.
The outputs stay in the browser's view and the notebook's results are written under scratch/. The .py twins' header
is pinned by notebooks/jupytext.toml. tests/test_jupyterlab.py saves a run notebook through this configuration.
"""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
JUPYTEXT_METADATA = ("formats",)  # the pairing with the .py twin; jupytext's other entries (filters read from
# notebooks/jupytext.toml, main_language) and every other notebook-level entry are dropped
CELL_METADATA = ("tags",)  # the parameters tag papermill reads


def store_without_outputs(model, **kwargs):
    """A contents manager's pre-save hook: the notebook model as the repository stores it."""
    if model.get("type") != "notebook":
        return
    nb = model["content"]
    jupytext = {k: v for k, v in nb["metadata"].get("jupytext", {}).items() if k in JUPYTEXT_METADATA}
    nb["metadata"] = dict({"jupytext": jupytext} if jupytext else {}, kernelspec=dict(KERNELSPEC))
    cells = []
    for cell in nb["cells"]:
        cell = dict(cell, metadata={k: v for k, v in cell.get("metadata", {}).items() if k in CELL_METADATA})
        if cell["cell_type"] == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    nb["cells"] = cells


c = get_config()  # noqa: F821 (defined by the config loader)
c.ContentsManager.pre_save_hook = store_without_outputs
