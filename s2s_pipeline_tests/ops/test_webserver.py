"""The Dagster UI against the real code location: names from CONTRACT.md, owners, tags, code versions,
freshness and metadata plots over GraphQL, and the asset graph and Plots view in headless Chromium.

Starts `dagster-webserver -w workspace.yaml` on a free loopback port, with a
throwaway DAGSTER_HOME (SQLite storage, telemetry and the community pop-up off)
so the repository's production `dagster.yaml` (Postgres) is never read. Before
it starts, two `nightly_trait_refresh` runs (a day of Stripe activity between
them) and one `failed_payment_alert` run against the Stripe stand-in and the
Segment sink fill that instance, so the UI has materializations to chart.

The screenshots are kept in the test's temp dir; with S2S_UPDATE_SCREENSHOTS=1
they replace docs/screenshots/asset-graph.png (the README's picture: the whole
graph, fitted) and docs/screenshots/customer-traits-plots.png. Chromium is
Debian's /usr/bin/chromium (`.ci/install-chromium.sh`); without it the
browser test is skipped, except with CI=true, where it fails.

Sensor `failed_payment_sensor` and job `failed_payment_alert` are required too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from pathlib import Path

import pytest

from s2s_devtools.harness.daemon import kill_group
from s2s_pipeline_tests.ops.browser import HeadlessChromium

pytestmark = pytest.mark.webserver

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshots" / "asset-graph.png"
PLOTS_SCREENSHOT = REPO / "docs" / "screenshots" / "customer-traits-plots.png"
CHROMIUM = Path("/usr/bin/chromium")
LOCATION = "s2s_pipeline"

STARTUP_DEADLINE_S = 60
SHUTDOWN_DEADLINE_S = 15
CHROMIUM_DEADLINE_S = 90

# --- names fixed by CONTRACT.md ("Dagster names") and the asset layout -------------------
REQUIRED_NOW = {
    "jobs": ["nightly_trait_refresh", "stripe_backfill", "failed_payment_alert"],
    "schedules": ["nightly_trait_refresh_schedule"],
    "sensors": ["failed_payment_sensor"],
    # asset -> group
    "assets": {
        "stripe_change_feed": "stripe",
        "stripe_products": "stripe",
        "stripe_prices": "stripe",
        "stripe_coupons": "stripe",
        "stripe_customers": "stripe",
        "stripe_subscriptions": "stripe",
        "stripe_invoices": "stripe",
        "stripe_charges": "stripe",
        "stripe_refunds": "stripe",
        "stripe_disputes": "stripe",
        "customer_traits": "traits",
        "segment_profiles": "segment",
        "segment_track_events": "segment",
        "failed_payment_alerts": "segment",
        "segment_payment_history": "segment",
        "segment_regulations": "segment",
    },
    "groups": ["stripe", "traits", "segment"],
}
SENSOR_TARGETS = {"failed_payment_sensor": "failed_payment_alert"}
SCHEDULE_TARGETS = {"nightly_trait_refresh_schedule": ("nightly_trait_refresh", "0 2 * * *", "UTC")}
CUSTOMER_TRAITS_CHECKS = {"one_row_per_customer", "non_negative_money", "refund_rate_within_bounds", "spend_tier_valid"}
NIGHTLY_FRESHNESS_SECONDS = {"stripe_change_feed": 26 * 3600, "customer_traits": 26 * 3600}
#: Plain numbers each asset's latest materialization carries, which the Plots view charts over time.
PLOTTED = {
    "customer_traits": {"customers", "paying_customers", "mrr_total_usd", "mrr_total_eur"},
    "segment_profiles": {"messages_sent", "messages_failed"},
    "segment_track_events": {"messages_sent", "messages_failed"},
    "failed_payment_alerts": {"latency_seconds"},
}


# --- an instance with runs to show ----------------------------------------------------------

def _fill_instance(home: Path) -> None:
    """Two nightly runs and one failed-payment alert, in this process, into the instance at ``home``."""
    from dagster import DagsterInstance

    from s2s_devtools.demo.changes import simulate_changes
    from s2s_devtools.demo.generator import generate_account, seed_standin
    from s2s_devtools.fakes.segment_sink import SegmentSink
    from s2s_devtools.fakes.stripe import StripeStandIn
    from s2s_pipeline.definitions import defs

    account = generate_account(customers=40, seed=3)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with StripeStandIn() as standin, SegmentSink(write_key="wk_ui") as sink, pytest.MonkeyPatch.context() as env:
        seed_standin(standin, account)
        standin.now = None  # follow the wall clock, so the simulated day's events are new
        env.setenv("S2S_DATABASE_URL", f"sqlite:///{home / 'state.db'}")
        for name, value in {"STRIPE_API_KEY": "sk_test_ui", "STRIPE_API_BASE": standin.base_url,
                            "SEGMENT_WRITE_KEY": "wk_ui", "SEGMENT_HOST": sink.base_url}.items():
            env.setenv(name, value)
        with DagsterInstance.from_config(str(home)) as instance:
            nightly = defs.resolve_job_def("nightly_trait_refresh")
            assert nightly.execute_in_process(instance=instance, run_config=quiet).success
            simulate_changes(standin, account)  # includes an invoice.payment_failed
            assert nightly.execute_in_process(instance=instance, run_config=quiet).success
            req = urllib.request.Request(f"{standin.base_url}/v1/events?type=invoice.payment_failed&limit=1",
                                         headers={"Authorization": "Bearer sk_test_ui"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                event_id = json.load(resp)["data"][0]["id"]
            alert = defs.resolve_job_def("failed_payment_alert")
            config = {**quiet, "ops": {"failed_payment_alerts": {"config": {"stripe_event_id": event_id}}}}
            assert alert.execute_in_process(instance=instance, run_config=config,
                                            tags={"s2s/stripe_event_id": event_id}).success


# --- the webserver ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def webserver(tmp_path_factory):
    """Base URL of a dagster-webserver serving workspace.yaml on a free 127.0.0.1 port."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text(
        "# Test instance: SQLite storage under this directory.\n"
        "telemetry:\n  enabled: false\n"
        "nux:\n  enabled: false\n"
    )
    _fill_instance(home)
    log_path = home / "webserver.log"
    port = _free_port()
    exe = Path(sys.executable).parent / "dagster-webserver"
    assert exe.exists(), f"dagster-webserver not found next to {sys.executable}"
    env = dict(os.environ)
    env.pop("DAGSTER_PG_URL", None)
    env.update(DAGSTER_HOME=str(home), STRIPE_API_KEY="sk_test_dummy")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster-webserver did not answer /server_info within "
                            f"{STARTUP_DEADLINE_S} s:\n{_tail(log_path)}")
            try:
                proc.wait(timeout=0.25)  # poll interval; returns early if it dies
            except subprocess.TimeoutExpired:
                pass
        yield base
    finally:
        kill_group(proc)


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{base}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        payload = json.load(resp)
    assert not payload.get("errors"), f"GraphQL errors: {payload['errors']}"
    return payload["data"]


WORKSPACE_QUERY = """
query S2SWorkspace {
  workspaceOrError {
    __typename
    ... on PythonError { message }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            name
            repositories {
              name
              jobs { name description }
              schedules {
                name cronSchedule executionTimezone pipelineName defaultStatus
                scheduleState { status }
              }
              sensors {
                name defaultStatus
                sensorState { status }
                targets { pipelineName }
              }
              assetGroups { groupName assetKeys { path } }
              assetNodes {
                assetKey { path }
                groupName
                description
                opVersion
                kinds
                owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
                tags { key value }
                internalFreshnessPolicy {
                  __typename
                  ... on TimeWindowFreshnessPolicy { failWindowSeconds }
                }
                assetChecksOrError {
                  __typename
                  ... on AssetChecks { checks { name description } }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""


@pytest.fixture(scope="module")
def repository(webserver) -> dict:
    """The code location's single repository, as GraphQL reports it (fails on load errors)."""
    ws = _graphql(webserver, WORKSPACE_QUERY)["workspaceOrError"]
    assert ws["__typename"] == "Workspace", f"workspace error: {ws.get('message')}"
    entries = {e["name"]: e for e in ws["locationEntries"]}
    assert LOCATION in entries, f"code location {LOCATION!r} not loaded; found {sorted(entries)}"
    loc = entries[LOCATION]["locationOrLoadError"]
    assert loc is not None, f"code location {LOCATION!r} status {entries[LOCATION]['loadStatus']}"
    assert loc["__typename"] == "RepositoryLocation", (
        f"code location {LOCATION!r} failed to load: {loc.get('message')}\n{''.join(loc.get('stack') or [])}"
    )
    repos = loc["repositories"]
    assert len(repos) == 1, f"expected one repository in {LOCATION!r}, got {[r['name'] for r in repos]}"
    return repos[0]


def _key(node: dict) -> str:
    return "/".join(node["assetKey"]["path"])


# --- GraphQL: the contract's names --------------------------------------------------------

def test_jobs_exist(repository):
    jobs = {j["name"] for j in repository["jobs"]}
    missing = [n for n in REQUIRED_NOW["jobs"] if n not in jobs]
    assert not missing, f"jobs missing: {missing}; defined: {sorted(jobs)}"


def test_schedule_runs_job_nightly_and_is_on_by_default(repository):
    schedules = {s["name"]: s for s in repository["schedules"]}
    for name in REQUIRED_NOW["schedules"]:
        assert name in schedules, f"schedule {name!r} missing; defined: {sorted(schedules)}"
        s = schedules[name]
        job, cron, tz = SCHEDULE_TARGETS[name]
        assert s["pipelineName"] == job
        assert s["cronSchedule"] == cron
        assert (s["executionTimezone"] or "UTC") == tz
        assert s["defaultStatus"] == "RUNNING", f"{name} must be on by default"
        assert s["scheduleState"]["status"] == "RUNNING", f"{name} is {s['scheduleState']['status']} on a new instance"


def test_failed_payment_sensor_targets_its_job_and_is_on_by_default(repository):
    sensors = {s["name"]: s for s in repository["sensors"]}
    jobs = {j["name"] for j in repository["jobs"]}
    names = REQUIRED_NOW["sensors"]
    missing = [n for n in names if n not in sensors]
    assert not missing, f"sensors missing: {missing}; defined: {sorted(sensors)}"
    for name in names:
        s = sensors[name]
        target = SENSOR_TARGETS[name]
        assert target in jobs, f"sensor {name} exists but its job {target!r} does not"
        assert target in {t["pipelineName"] for t in (s["targets"] or [])}, f"{name} targets {s['targets']}"
        assert s["defaultStatus"] == "RUNNING", f"{name} must be on by default"
        assert s["sensorState"]["status"] == "RUNNING", f"{name} is {s['sensorState']['status']} on a new instance"


def test_assets_and_groups(repository):
    nodes = {_key(n): n for n in repository["assetNodes"]}
    missing = [k for k in REQUIRED_NOW["assets"] if k not in nodes]
    assert not missing, f"assets missing: {missing}; defined: {sorted(nodes)}"
    wrong_group = {k: nodes[k]["groupName"] for k, g in REQUIRED_NOW["assets"].items() if nodes[k]["groupName"] != g}
    assert not wrong_group, f"assets in the wrong group: {wrong_group}"
    groups = {g["groupName"]: {"/".join(k["path"]) for k in g["assetKeys"]} for g in repository["assetGroups"]}
    for group in REQUIRED_NOW["groups"]:
        assert group in groups, f"asset group {group!r} missing; groups: {sorted(groups)}"
        expected = {k for k, g in REQUIRED_NOW["assets"].items() if g == group}
        assert expected <= groups[group], f"group {group!r} lacks {sorted(expected - groups[group])}"


def test_every_asset_has_a_description(repository):
    undocumented = sorted(_key(n) for n in repository["assetNodes"] if not (n["description"] or "").strip())
    assert not undocumented, f"assets without a description (blank in the UI): {undocumented}"


def test_customer_traits_checks(repository):
    nodes = {_key(n): n for n in repository["assetNodes"]}
    checks_or_error = nodes["customer_traits"]["assetChecksOrError"]
    assert checks_or_error["__typename"] == "AssetChecks", checks_or_error
    checks = {c["name"]: c for c in checks_or_error["checks"]}
    missing = CUSTOMER_TRAITS_CHECKS - set(checks)
    assert not missing, f"asset checks missing on customer_traits: {sorted(missing)}; found {sorted(checks)}"
    undocumented = sorted(n for n in CUSTOMER_TRAITS_CHECKS if not (checks[n]["description"] or "").strip())
    assert not undocumented, f"asset checks without a description: {undocumented}"


def test_every_asset_shows_owners_tags_kinds_and_a_code_version(repository):
    for node in repository["assetNodes"]:
        key = _key(node)
        owners = {o.get("team") or o.get("email") for o in node["owners"]}
        assert owners and "data-eng" in owners, f"{key}: owners {node['owners']}"
        tags = {t["key"]: t["value"] for t in node["tags"]}
        assert tags.get("domain") == REQUIRED_NOW["assets"][key], f"{key}: tags {tags}"
        assert tags.get("layer") and tags.get("cadence"), f"{key}: tags {tags}"
        assert node["kinds"], f"{key} has no kinds"
        assert node["opVersion"], f"{key} has no code version"


def test_change_feed_and_traits_show_a_nightly_freshness_policy(repository):
    nodes = {_key(n): n for n in repository["assetNodes"]}
    for key, seconds in NIGHTLY_FRESHNESS_SECONDS.items():
        policy = nodes[key]["internalFreshnessPolicy"]
        assert policy == {"__typename": "TimeWindowFreshnessPolicy", "failWindowSeconds": seconds}, (key, policy)


LATEST_METADATA_QUERY = """
query S2SLatestMetadata($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetMaterializations(limit: 1) { metadataEntries { label __typename } }
  }
}
"""


def test_latest_materializations_carry_the_numbers_the_plots_chart(webserver):
    keys = [{"path": [k]} for k in PLOTTED]
    nodes = {_key(n): n for n in _graphql(webserver, LATEST_METADATA_QUERY, {"keys": keys})["assetNodes"]}
    for key, labels in PLOTTED.items():
        (latest,) = nodes[key]["assetMaterializations"]
        numeric = {e["label"] for e in latest["metadataEntries"]
                   if e["__typename"] in ("IntMetadataEntry", "FloatMetadataEntry")}
        assert labels <= numeric, f"{key}: {sorted(labels - numeric)} not plain numbers; numeric: {sorted(numeric)}"


# --- Headless Chromium: the asset graph -------------------------------------------------

def _asset_graph_url(base: str) -> str:
    """The global lineage page with both groups expanded (the UI's `expanded` query parameter).

    `/asset-groups` alone shows two collapsed group boxes; `/asset-groups/<group>`
    (which redirects to /locations/<loc>/asset-groups/<group>) shows one group only.
    Group ids are `global@global:<group>` unless the per-code-location UI flag is on,
    which a fresh browser profile never has.
    """
    expanded = ",".join(f"global@global:{g}" for g in REQUIRED_NOW["groups"])
    return f"{base}/asset-groups?{urllib.parse.urlencode({'expanded': expanded})}"


@pytest.fixture(scope="module")
def chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing: run .ci/install-chromium.sh first")
    pytest.skip(f"{CHROMIUM} is missing (run .ci/install-chromium.sh as root to install Debian's chromium)")


def _run_chromium(chromium: Path, tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile; its whole process group is killed afterwards."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    cmd = [
        str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-quic", f"--user-data-dir={profile}", "--hide-scrollbars",
        "--window-size=1600,1000", "--virtual-time-budget=10000", *extra, url,
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_DEADLINE_S)
    except subprocess.TimeoutExpired:
        kill_group(proc, 5)
        pytest.fail(f"Chromium did not finish within {CHROMIUM_DEADLINE_S} s: {' '.join(cmd)}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftover helpers, if any
        except ProcessLookupError:
            pass
    result = subprocess.CompletedProcess(cmd, proc.returncode, out.decode(errors="replace"),
                                         err.decode(errors="replace"))
    assert result.returncode == 0, f"Chromium exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def _png_summary(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, decompressed filtered scanlines) of a PNG, validating its structure."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, width, height, idat = 8, 0, 0, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8, f"unexpected bit depth {depth}"
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif ctype == b"IDAT":
            idat.append(chunk)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    raw = zlib.decompress(b"".join(idat))
    assert len(raw) == height * (1 + width * channels), "PNG data does not match its header"
    return width, height, raw


#: How many asset nodes lie wholly inside the graph's visible viewport (the element holding the zoom controls).
_NODES_IN_VIEW = """(() => {
  const names = new Set(%s);
  const zoom = document.querySelector('[aria-label="zoom_out"]');
  const svg = [...document.querySelectorAll('svg')].find(s => s.querySelector('foreignObject'));
  if (!zoom || !svg) return 0;
  let view = svg; while (view && !view.contains(zoom)) view = view.parentElement;
  const v = view.getBoundingClientRect();
  return [...svg.querySelectorAll('foreignObject')].filter(f => {
    const r = f.getBoundingClientRect(), name = f.querySelector('[class*="assetName"]');
    const label = name ? name.textContent.trim().replace('...', '…') : '';
    return [...names].some(n => label === n || (label.includes('…') && n.startsWith(label.split('…')[0])))
      && r.left >= v.left && r.right <= v.right && r.top >= v.top && r.bottom <= v.bottom;
  }).length;
})()""" % json.dumps(sorted(REQUIRED_NOW["assets"]))


def test_asset_graph_renders(webserver, chromium, tmp_path):
    url = _asset_graph_url(webserver)

    dom = _run_chromium(chromium, tmp_path, url, "--dump-dom").stdout
    for name in ("stripe_change_feed", "customer_traits"):
        assert name in dom, f"rendered DOM of {url} lacks {name!r} (graph not rendered?); {len(dom)} chars"
    assert "Global asset lineage" in dom, "not the lineage page"

    shot = tmp_path / "asset-graph.png"
    with HeadlessChromium(chromium, tmp_path / "chromium-profile-graph") as browser:
        # Top-to-bottom layout (the UI's own setting, kept in localStorage): the ten mirror tables sit side
        # by side, so the UI's initial zoom-to-fit shows the whole graph on a landscape page.
        browser.open(f"{webserver}/server_info")
        browser.wait_for("document.readyState === 'complete'", "the server_info page")
        browser.evaluate("localStorage.setItem('asset-graph-direction', JSON.stringify('vertical'))")
        browser.open(url)
        browser.wait_for(f"{_NODES_IN_VIEW} >= {len(REQUIRED_NOW['assets'])} && "
                         "document.querySelectorAll('svg path').length > 20 && "
                         "document.querySelector('[style*=\"background-green\"]') !== null",
                         f"all {len(REQUIRED_NOW['assets'])} asset nodes inside the visible graph, with their "
                         "edges and the materialized ones in green")
        shot.write_bytes(browser.screenshot())
    assert shot.exists(), "Chromium wrote no screenshot"
    data = shot.read_bytes()
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes: {shot}"
    width, height, raw = _png_summary(data)
    assert (width, height) == (1600, 1000), f"screenshot is {width}x{height}"
    # A one-colour (blank) image filters down to a handful of byte values; a rendered page has many.
    counts = Counter(raw)
    most_common = counts.most_common(1)[0][1] / len(raw)
    assert len(counts) > 64 and most_common < 0.98, (
        f"screenshot looks blank ({len(counts)} distinct byte values, top one {most_common:.1%}): {shot}"
    )
    if os.environ.get("S2S_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_asset_page_shows_owners_freshness_and_plots_of_its_numbers(webserver, chromium, tmp_path):
    with HeadlessChromium(chromium, tmp_path / "chromium-profile-plots") as browser:
        browser.open(f"{webserver}/assets/customer_traits")
        browser.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Plots')",
                         "the metadata section's Plots toggle")
        browser.wait_for("document.body.innerText.includes('Fails if more than 26 hours since last materialization')",
                         "the freshness policy (26 hours) in the asset's definition")
        page = browser.text()
        for shown in ("data-eng", "revops", "domain: traits", "cadence: nightly"):
            assert shown in page, f"the customer_traits page does not show {shown!r}"
        browser.evaluate("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Plots').click()")
        # One chart (a canvas) per numeric metadata key, titled with the key.
        browser.wait_for("document.querySelectorAll('canvas').length >= %d" % len(PLOTTED["customer_traits"]),
                         "the metadata plots")
        page = browser.text()
        missing = sorted(k for k in PLOTTED["customer_traits"] if k not in page)
        assert not missing, f"no plot titled {missing}"
        shot = tmp_path / "customer-traits-plots.png"
        shot.write_bytes(browser.screenshot())
    if os.environ.get("S2S_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, PLOTS_SCREENSHOT)
