"""The s2s-pipeline code location: every asset, check, job, schedule, sensor and resource.

Everything is loaded from the ``s2s_pipeline/defs`` folder the dg way
(``[tool.dg]`` in pyproject.toml names the project); ``defs`` is the
attribute ``workspace.yaml`` and ``[tool.dagster]`` point at.
"""

from pathlib import Path

from dagster import load_from_defs_folder

defs = load_from_defs_folder(path_within_project=Path(__file__).parent)
