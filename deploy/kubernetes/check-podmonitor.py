#!/usr/bin/env python3
"""Checks Prometheus Operator PodMonitor manifests against podmonitor.schema.json.

kubernetes-validate ships the schemas of Kubernetes' own kinds only: for a PodMonitor it warns that it
has no schema and exits 0. This checks the way kubernetes-validate does (JSON Schema draft 2020-12,
with the jsonschema and PyYAML modules it depends on), against a strict schema of the fields we use.

    python3 deploy/kubernetes/check-podmonitor.py deploy/kubernetes/podmonitor.schema.json \
        deploy/kubernetes/podmonitor.yaml

Exit status 0 when every document is valid, 1 otherwise (each error printed with its path).
"""
import json
import sys

import jsonschema
import yaml


def main(schema_path, manifest_paths):
    with open(schema_path) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for path in manifest_paths:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        for document in documents:
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            for error in errors:
                failed = True
                print("%s: /%s: %s" % (path, "/".join(map(str, error.path)), error.message))
            if not errors:
                print("%s: %s/%s valid" % (path, document["kind"], document["metadata"]["name"]))
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: check-podmonitor.py SCHEMA.json MANIFEST.yaml...")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
