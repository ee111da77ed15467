#!/usr/bin/python3
"""Structural checks of deploy/kubernetes that need no cluster and no kubectl.

- The PrometheusRule in the base holds exactly the groups of
  deploy/prometheus/entrowatch.rules.yml (the source of truth). With
  --write-prometheusrule it is regenerated from that file instead.
- Every alert's runbook_url names a section of docs/runbooks.md.
- Every kustomization lists files that exist, every manifest has apiVersion,
  kind and metadata.name, containers run as non-root with a read-only root
  file system, and the Service selects the pods of the workload.

Exit status 0 when everything holds; otherwise each problem is printed.
"""

import argparse
import os
import re
import sys

import yaml

DEPLOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")
RULES = os.path.join(DEPLOY, "prometheus", "entrowatch.rules.yml")
KUBE = os.path.join(DEPLOY, "kubernetes")
PROMETHEUS_RULE = os.path.join(KUBE, "base", "prometheusrule.yaml")
RUNBOOKS = os.path.join(DEPLOY, "..", "docs", "runbooks.md")

HEADER = """\
# Generated from deploy/prometheus/entrowatch.rules.yml (the source of truth);
# tests/deploy/check_manifests.py checks that both hold the same groups.
# Regenerate with: tests/deploy/check_manifests.py --write-prometheusrule
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: entrowatch
spec:
"""


def write_prometheus_rule():
    with open(RULES) as f:
        lines = f.read().splitlines()
    start = lines.index("groups:")
    body = "\n".join(("  " + line) if line else "" for line in lines[start:])
    with open(PROMETHEUS_RULE, "w") as f:
        f.write(HEADER + body + "\n")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_prometheus_rule(problems):
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    [doc] = load_all(PROMETHEUS_RULE)
    if doc.get("spec", {}).get("groups") != rules["groups"]:
        problems.append(f"{PROMETHEUS_RULE}: groups differ from {RULES}; "
                        "run check_manifests.py --write-prometheusrule")


def github_anchor(heading):
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return anchor.replace(" ", "-")


def check_runbooks(problems):
    with open(RUNBOOKS) as f:
        anchors = {github_anchor(line.lstrip("#")) for line in f if line.startswith("#")}
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = rule.get("annotations", {}).get("runbook_url", "")
            path, _, anchor = url.partition("#")
            if path != "docs/runbooks.md" or anchor not in anchors:
                problems.append(f"{rule['alert']}: runbook_url {url!r} names no section of "
                                "docs/runbooks.md")


def check_workload(path, doc, problems):
    spec = doc["spec"]["template"]["spec"]
    pod_security = spec.get("securityContext", {})
    if not pod_security.get("runAsNonRoot"):
        problems.append(f"{path}: pod securityContext.runAsNonRoot is not true")
    for container in spec["containers"]:
        security = container.get("securityContext", {})
        if not security.get("readOnlyRootFilesystem"):
            problems.append(f"{path}: container {container['name']} has a writable root")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{path}: container {container['name']} allows privilege escalation")
        if "ALL" not in security.get("capabilities", {}).get("drop", []):
            problems.append(f"{path}: container {container['name']} keeps capabilities")


def check_kustomization(directory, problems, seen):
    directory = os.path.normpath(directory)
    if directory in seen:
        return
    seen.add(directory)
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.exists(path):
        problems.append(f"{directory}: no kustomization.yaml")
        return
    [k] = load_all(path)
    if k.get("kind") != "Kustomization":
        problems.append(f"{path}: kind is not Kustomization")
    files = list(k.get("resources", []))
    for patch in k.get("patches", []):
        if "path" in patch:
            files.append(patch["path"])
    for generator in k.get("configMapGenerator", []):
        files.extend(f.split("=")[-1] for f in generator.get("files", []))
    for name in files:
        target = os.path.join(directory, name)
        if os.path.isdir(target):
            check_kustomization(target, problems, seen)
            continue
        if not os.path.exists(target):
            problems.append(f"{path}: lists {name}, which does not exist")
            continue
        if not name.endswith((".yaml", ".yml")) or name in [
                g.split("=")[-1] for gen in k.get("configMapGenerator", [])
                for g in gen.get("files", [])]:
            continue
        for doc in load_all(target):
            if doc.get("$patch") == "delete":
                continue
            for key in ("apiVersion", "kind"):
                if key not in doc:
                    problems.append(f"{target}: a document has no {key}")
            if not doc.get("metadata", {}).get("name"):
                problems.append(f"{target}: a document has no metadata.name")
            if doc.get("kind") in ("Deployment", "DaemonSet"):
                check_workload(target, doc, problems)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-prometheusrule", action="store_true")
    args = parser.parse_args()
    if args.write_prometheusrule:
        write_prometheus_rule()
        return 0
    problems = []
    check_prometheus_rule(problems)
    check_runbooks(problems)
    seen = set()
    for root, dirs, files in os.walk(KUBE):
        if "kustomization.yaml" in files:
            check_kustomization(root, problems, seen)
    for p in problems:
        print(p)
    print(f"checked {len(seen)} kustomizations: {'OK' if not problems else 'FAILED'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
