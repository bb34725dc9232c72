"""The Dagster layer (the only package that imports dagster), loaded as a dg defs folder.

``s2s_pipeline.definitions`` builds the code location with
``load_from_defs_folder``: every module under here is imported and the assets,
checks, jobs, schedules, sensors and ``@definitions`` resource bindings it
defines are merged. One folder per domain: ``stripe/`` (extraction),
``traits/`` (the trait table), ``segment/`` (delivery and alerts);
``resources.py`` is the state store they share and ``nightly.py`` the job that
spans them.

Import direction, so there are no cycles: resources modules import nothing
from ``defs``; assets import resources and the assets of domains before them
(stripe < traits < segment); jobs import assets.
"""
