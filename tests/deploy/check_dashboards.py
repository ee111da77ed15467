#!/usr/bin/python3
"""Checks the Grafana dashboards in dashboards/ without Grafana.

Structure (always): the fields Grafana provisioning and the datasource
variable need: a fixed uid, title, schemaVersion, a `datasource` variable of
type datasource and a `run` variable, every panel and target on
${datasource}, unique panel ids and refIds, a grid that fits 24 columns.

Queries (--prometheus URL, or --start-prometheus for a throw-away empty
server): every target's PromQL, with Grafana's variables and macros
substituted, is evaluated; any error fails. With --require-data each target
must also return at least one series (run after a scenario has fed data).
"""

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import servers  # noqa: E402

DASHBOARDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dashboards")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def all_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def check_structure(path, dashboard, problems):
    def fail(msg):
        problems.append(f"{os.path.basename(path)}: {msg}")

    uid = dashboard.get("uid", "")
    if not re.fullmatch(r"entrowatch-[a-z0-9-]+", uid) or len(uid) > 40:
        fail(f"uid {uid!r} is not a fixed entrowatch-* uid of at most 40 characters")
    if not dashboard.get("title"):
        fail("no title")
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        fail("schemaVersion missing or older than 36")
    if "id" in dashboard and dashboard["id"] is not None:
        fail("a provisioned dashboard must not carry a database id")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("no `datasource` variable of type datasource for prometheus")
    run = variables.get("run")
    if not run or run.get("type") != "query" or run.get("datasource") != DATASOURCE:
        fail("no `run` query variable on ${datasource}")
    ids = set()
    for panel in all_panels(dashboard):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            fail(f"panel {title!r}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not all(k in grid for k in ("x", "y", "w", "h")) or grid["x"] + grid["w"] > 24:
            fail(f"panel {title!r}: gridPos missing or wider than 24 columns")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != DATASOURCE:
            fail(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets:
            fail(f"panel {title!r}: no targets")
        ref_ids = [t.get("refId") for t in targets]
        if len(set(ref_ids)) != len(ref_ids) or None in ref_ids:
            fail(f"panel {title!r}: refIds missing or repeated")
        for target in targets:
            if target.get("datasource") != DATASOURCE:
                fail(f"panel {title!r} target {target.get('refId')}: datasource is not ${{datasource}}")
            if not target.get("expr"):
                fail(f"panel {title!r} target {target.get('refId')}: no expr")


def substitute(expr, run, phase, rate_interval, range_):
    # Longest names first: $__rate_interval before $__range.
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
            .replace("${run}", run).replace("$run", run)
            .replace("${phase}", phase).replace("$phase", phase))


def check_queries(path, dashboard, url, args, problems, report):
    end = time.time()
    start = end - args.range_seconds
    for panel in all_panels(dashboard):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], args.run, args.phase, args.rate_interval,
                              f"{args.range_seconds}s")
            where = f"{os.path.basename(path)} / {panel['title']} / {target['refId']}"
            try:
                if target.get("instant"):
                    result = servers.prom_query(url, expr, at=end)
                else:
                    result = servers.prom_query_range(url, expr, start, end, args.step)
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            report.append(f"{len(result):4d} series  {where}")
            if args.require_data and not result:
                problems.append(f"{where}: no data for {expr}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", help="base URL of a Prometheus to run the queries on")
    parser.add_argument("--start-prometheus", action="store_true",
                        help="start an empty Prometheus and check that every query parses")
    parser.add_argument("--require-data", action="store_true")
    parser.add_argument("--run", default="e2e-run")
    parser.add_argument("--phase", default=".*")
    parser.add_argument("--rate-interval", default="15s")
    parser.add_argument("--range-seconds", type=int, default=300)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)

    files = args.files or sorted(glob.glob(os.path.join(DASHBOARDS, "*.json")))
    problems, report = [], []
    dashboards = []
    uids = set()
    for path in files:
        with open(path) as f:
            dashboard = json.load(f)
        if dashboard.get("uid") in uids:
            problems.append(f"{path}: uid {dashboard.get('uid')} used twice")
        uids.add(dashboard.get("uid"))
        check_structure(path, dashboard, problems)
        dashboards.append((path, dashboard))

    prometheus = None
    url = args.prometheus
    workdir = tempfile.TemporaryDirectory(prefix="ew-dash-")
    try:
        if args.start_prometheus:
            prometheus, url = servers.start_prometheus(
                workdir.name, "global:\n  scrape_interval: 1m\nscrape_configs: []\n")
        if url:
            for path, dashboard in dashboards:
                check_queries(path, dashboard, url, args, problems, report)
    finally:
        if prometheus:
            prometheus.stop()
        workdir.cleanup()

    print("\n".join(report))
    for p in problems:
        print("PROBLEM:", p)
    panels = sum(1 for _, d in dashboards for p in all_panels(d) if p.get("type") != "row")
    print(f"{len(dashboards)} dashboards, {panels} panels, {len(report)} queries run: "
          f"{'OK' if not problems else 'FAILED'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
