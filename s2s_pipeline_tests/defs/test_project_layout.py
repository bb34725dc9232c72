"""The Dagster 1.13 project layout: the dg CLI and `dagster definitions validate` on the real project,
the defs folder without import cycles, and owners, tags, code versions and freshness on every asset."""

import ast
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import AssetKey
from dagster._core.definitions.freshness import TimeWindowFreshnessPolicy

from s2s_pipeline.definitions import defs

REPO = Path(__file__).resolve().parents[2]
DEFS_DIR = REPO / "s2s_pipeline" / "defs"
BIN = Path(sys.executable).parent

CONTRACT = {
    "jobs": {"nightly_trait_refresh", "stripe_backfill", "failed_payment_alert"},
    "schedules": {"nightly_trait_refresh_schedule"},
    "sensors": {"failed_payment_sensor"},
    "resources": {"stripe", "state_store", "segment", "trait_rules"},
    "asset_checks": {"one_row_per_customer", "non_negative_money", "refund_rate_within_bounds", "spend_tier_valid"},
}
#: Checks of other assets than customer_traits: segment_regulations' own, stripe_change_feed's quarantine.
OTHER_CHECKS = {"no_stuck_regulations", "quarantine_empty"}
DOMAINS = {"stripe", "traits", "segment"}
NIGHTLY_FRESHNESS = {"stripe_change_feed", "customer_traits"}


@pytest.fixture
def cli_env(tmp_path):
    """The environment of a CLI run: a throwaway DAGSTER_HOME (the repo's dagster.yaml wants Postgres)."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("DAGSTER_PG_URL", None)
    return env


def test_dg_list_defs_shows_the_contract_names_with_owners_and_tags(cli_env):
    proc = subprocess.run([str(BIN / "dg"), "list", "defs", "--json"], capture_output=True, text=True,
                          timeout=300, env=cli_env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = json.loads(proc.stdout)
    names = {section: {item.get("name") or item.get("key") for item in listed[section]} for section in CONTRACT}
    for section, expected in CONTRACT.items():
        assert expected <= names[section], f"dg list defs lacks {section} {sorted(expected - names[section])}"
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert len(assets) == 16
    for key, asset in assets.items():
        assert asset["owners"], f"{key} has no owners"
        tags = {t["key"]: t["value"] for t in asset["tags"]}
        assert tags.get("domain") == asset["group_name"] in DOMAINS, f"{key}: tags {tags}"
        assert asset["kinds"], f"{key} has no kinds"


def test_dagster_definitions_validate_reads_the_project_config(cli_env):
    # No -w / -m: the module comes from pyproject.toml, as `dagster dev` in the repo root would load it.
    proc = subprocess.run([str(BIN / "dagster"), "definitions", "validate"], capture_output=True, text=True,
                          timeout=300, env=cli_env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Validation successful for code location s2s_pipeline" in proc.stderr + proc.stdout


def _defs_imports(path: Path) -> set[str]:
    """The s2s_pipeline.defs modules a file imports (at any depth of the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("s2s_pipeline.defs"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("s2s_pipeline.defs")}
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_defs_folder_has_no_import_cycles_and_resources_modules_are_leaves():
    graph = {_module_name(p): _defs_imports(p) for p in DEFS_DIR.rglob("*.py")}
    for module, imports in graph.items():
        if module.endswith(".resources"):
            assert not imports, f"{module} imports {sorted(imports)}: resources modules import nothing from defs"
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join(path + [module])}"
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            visit(imported, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_every_asset_has_owners_tags_and_a_code_version():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners, f"{key.to_user_string()} has no owners"
        assert all(o.startswith("team:") for o in node.owners), node.owners
        assert node.tags.get("domain") == node.group_name, f"{key.to_user_string()}: {node.tags}"
        assert node.tags.get("cadence") in {"nightly", "backfill", "per_event"}, node.tags
        assert node.code_version, f"{key.to_user_string()} has no code_version"


def test_the_change_feed_and_the_traits_are_stale_26_hours_after_their_last_nightly_run():
    graph = defs.resolve_asset_graph()
    for name in NIGHTLY_FRESHNESS:
        policy = graph.get(AssetKey(name)).freshness_policy
        assert isinstance(policy, TimeWindowFreshnessPolicy), f"{name}: {policy!r}"
        assert policy.fail_window.to_timedelta() == timedelta(hours=26)


def test_trait_checks_run_in_the_customer_traits_commit_step():
    traits_def = defs.resolve_assets_def("customer_traits")
    assert {c.name for c in traits_def.check_keys} == CONTRACT["asset_checks"]
    assert {c.name for c in defs.resolve_asset_graph().asset_check_keys} == CONTRACT["asset_checks"] | OTHER_CHECKS
    # a graph: plan -> one mapped step per shard -> commit; the commit step reports the table and its checks
    graph = traits_def.node_def
    assert {n.name for n in graph.nodes} == {"plan_trait_shards", "compute_trait_shard", "commit_customer_traits"}
    assert {m.maps_from.node_name for m in graph.output_mappings} == {"commit_customer_traits"}
    assert len(graph.output_mappings) == 1 + len(CONTRACT["asset_checks"])
