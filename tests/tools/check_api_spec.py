#!/usr/bin/env python3
"""Checks docs/api.yaml (OpenAPI 3) against the control API server's own
table of endpoints (`test_api --endpoints-json`, from src/control/api.c):
the same endpoints, statuses, request keys and reply fields, nothing more.
Usage: check_api_spec.py API_YAML ENDPOINTS_JSON. Prints one line per
difference and exits 1 when there is any."""
import json
import sys

import yaml

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def main():
    with open(sys.argv[1]) as f:
        spec = yaml.safe_load(f)
    with open(sys.argv[2]) as f:
        table = json.load(f)
    problems = []

    def problem(msg):
        problems.append(msg)

    def resolve(node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                problem(f"external $ref {ref}")
                return {}
            node = spec
            for part in ref[2:].split("/"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            seen += 1
            if seen > 16:
                problem(f"$ref loop at {ref}")
                return {}
        return node

    def fields(schema, prefix=""):
        """Property names, with "a.b" for an object property's own."""
        schema = resolve(schema)
        out = set()
        for name, sub in (schema.get("properties") or {}).items():
            out.add(prefix + name)
            sub = resolve(sub)
            if sub.get("type") == "object" and sub.get("properties"):
                out |= fields(sub, prefix + name + ".")
        return out

    def json_schema(node):
        content = resolve(node).get("content") or {}
        if not content:
            return None
        if set(content) != {"application/json"}:
            problem(f"content types {sorted(content)}")
        return content.get("application/json", {}).get("schema", {})

    if not str(spec.get("openapi", "")).startswith("3."):
        problem("not an OpenAPI 3 document")
    if spec.get("x-unknown-path-status") != table["no_endpoint_status"]:
        problem(f"x-unknown-path-status is not {table['no_endpoint_status']}")

    declared = {(e["url"], e["method"].lower()): e for e in table["endpoints"]}
    documented = {}
    for url, item in (spec.get("paths") or {}).items():
        for method, op in item.items():
            if method in METHODS:
                documented[(url, method)] = op
    for key in sorted(set(declared) - set(documented)):
        problem(f"{key[1].upper()} {key[0]}: served but not in the file")
    for key in sorted(set(documented) - set(declared)):
        problem(f"{key[1].upper()} {key[0]}: in the file but not served")

    common = set(table["common_statuses"])
    for key in sorted(set(declared) & set(documented)):
        ep, op = declared[key], documented[key]
        where = f"{key[1].upper()} {key[0]}"
        want = set(ep["statuses"]) | common
        responses = op.get("responses") or {}
        got = {int(s) for s in responses if str(s).isdigit()}
        if set(map(str, responses)) - {str(s) for s in got}:
            problem(f"{where}: non-numeric responses {sorted(map(str, responses))}")
        for s in sorted(want - got):
            problem(f"{where}: status {s} is served but not in the file")
        for s in sorted(got - want):
            problem(f"{where}: status {s} is in the file but not served")
        for s in sorted(got & want):
            schema = json_schema(responses.get(str(s), responses.get(s)))
            if s >= 300:
                if schema is None or fields(schema) != {"error"}:
                    problem(f"{where}: {s} must have the Error body")
                continue
            have = None if schema is None else fields(schema)
            expect = None if ep["reply_fields"] is None else set(ep["reply_fields"])
            if have != expect:
                problem(f"{where}: {s} fields {sorted(have or [])}, "
                        f"served {sorted(expect or [])}")
        body = op.get("requestBody")
        if ep["request_keys"] is None:
            if body is not None:
                problem(f"{where}: the file has a request body, the server takes none")
        else:
            schema = json_schema(body) if body else None
            if schema is None:
                problem(f"{where}: no request body in the file")
            else:
                if fields(schema) != set(ep["request_keys"]):
                    problem(f"{where}: request keys {sorted(fields(schema))}, "
                            f"served {sorted(ep['request_keys'])}")
                req = set(resolve(schema).get("required") or [])
                if req != set(ep["request_required"] or []):
                    problem(f"{where}: required {sorted(req)}, "
                            f"served {sorted(ep['request_required'] or [])}")
                if resolve(schema).get("additionalProperties") is not False:
                    problem(f"{where}: the server refuses unknown keys "
                            "(additionalProperties: false)")

    for p in problems:
        print(f"docs/api.yaml: {p}")
    if not problems:
        print(f"docs/api.yaml: {len(declared)} endpoints match the server")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
