#!/usr/bin/env python3
"""Vendors the request schema exp's bodies are checked against (tests/openapi.rs).

Extracts `CreateChatCompletionRequest` and every schema it references, transitively, from the
official OpenAI OpenAPI spec (github.com/openai/openai-openapi, `openapi.json`) into one
self-contained JSON Schema (draft 2020-12) document: `#/components/schemas/X` becomes `#/$defs/X`.
Nothing else is changed, so the file says exactly what the spec says.

    git -C openai-openapi show COMMIT:openapi.json > /tmp/openapi.json
    python3 scripts/vendor_openapi.py /tmp/openapi.json COMMIT \
        > tests/data/openapi/create_chat_completion_request.schema.json

Vendored from commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (2026-08-21).
"""
import json
import sys

ROOT = "CreateChatCompletionRequest"
PREFIX = "#/components/schemas/"


def refs(node):
    """Every schema name `node` refers to."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX):
                yield v[len(PREFIX):]
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def rewrite(node):
    """`node` with its references pointing into `$defs`."""
    if isinstance(node, dict):
        return {
            k: ("#/$defs/" + v[len(PREFIX):]
                if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX) else rewrite(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def main():
    spec_path, commit = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    schemas = spec["components"]["schemas"]
    wanted, todo = set(), [ROOT]
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        todo.extend(refs(schemas[name]))
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"{ROOT} and the {len(wanted) - 1} schemas it references, from "
            f"github.com/openai/openai-openapi openapi.json at commit {commit} "
            f"(OpenAPI {spec['openapi']}, API version {spec['info']['version']}); "
            "written by scripts/vendor_openapi.py, do not edit"
        ),
        "$ref": "#/$defs/" + ROOT,
        "$defs": {name: rewrite(schemas[name]) for name in sorted(wanted)},
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
