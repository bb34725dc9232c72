"""The installed package is only the product: ``pip wheel .`` ships no stand-in, sink, generator or test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Words that name development tooling; none may appear in a shipped module path.
TOOLING_WORDS = ("standin", "stand_in", "sink", "generator", "fake", "harness", "demo", "test", "conftest",
                 "localstripe", "devtools")


def test_the_wheel_holds_only_the_s2s_pipeline_package(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".demo", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("s2s_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"s2s_pipeline"}
    modules = [n for n in names if n.endswith(".py")]
    assert "s2s_pipeline/definitions.py" in modules and len(modules) > 30  # the product is all there
    tooling = [n for n in modules if any(word in n.lower() for word in TOOLING_WORDS)]
    assert tooling == [], f"development tooling shipped in the wheel: {tooling}"
    entry_points = next((zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt")),
                        "")
    assert "s2s-demo" not in entry_points  # the demo command comes with devtools/, not the product

    # Installed from the wheel alone (no checkout, no pyproject.toml beside it), the code location
    # still loads: load_from_defs_folder finds the dg.toml shipped in the package.
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(wheel)], check=True, cwd=tmp_path)
    probe = ("import s2s_pipeline, s2s_pipeline.definitions as d; "
             "print(s2s_pipeline.__file__); print(sorted(j.name for j in d.defs.jobs))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)}).stdout.splitlines()
    assert out[0].startswith(str(target))  # the wheel's copy, not the checkout
    assert "nightly_trait_refresh" in out[1] and "stripe_backfill" in out[1]
