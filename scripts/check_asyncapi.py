#!/usr/bin/env python3
"""Checks schemas/asyncapi.yaml (AsyncAPI 3.0.0) offline, as `make test` runs it.

1. Against the official AsyncAPI 3.0.0 JSON Schema (the bundled `3.0.0-without-$id.json` of
   github.com/asyncapi/spec-json-schemas) when ASYNCAPI_SCHEMA names a copy of it. No package on
   PyPI or Debian ships that file and CI reaches only those two, so it is not fetched here.
2. Always: the structure the AsyncAPI 3.0.0 schema requires of what Warren uses (the schema below,
   written from the specification: unknown fields refused, `action` send|receive, references
   where references are required), that every `$ref` resolves (a JSON pointer in the document,
   or a file beside it and a pointer in that file), that every referenced JSON Schema is valid
   against its metaschema, and that every `*.schema.json` under schemas/ is reachable from the
   document (directly or through other schemas).

Exits 1 naming each problem. Reads only; idempotent.
"""
import json
import os
import sys
from pathlib import Path

import jsonschema
import yaml

REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string"}}, "additionalProperties": False}
EXT = {"^x-[\\w\\d.\\-_]+$": {}}
NAME = "^[\\w\\d.\\-_]+$"


def obj(properties, required=(), extensions=True):
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if extensions:
        schema["patternProperties"] = EXT
    return schema


def ref_or(schema):
    return {"oneOf": [REF, schema]}


def named_map(value):
    return {"type": "object", "propertyNames": {"pattern": NAME}, "additionalProperties": value}


TEXT = {"type": "string"}
TAGS = {"type": "array"}
BINDINGS = {"type": "object"}
SCHEMA = {"type": ["object", "boolean"]}
PARAMETER = obj({"enum": {"type": "array", "items": TEXT, "minItems": 1}, "default": TEXT, "description": TEXT,
                 "examples": {"type": "array", "items": TEXT}, "location": {"type": "string", "pattern": "^\\$message\\.(header|payload)#"}})
MESSAGE = obj({
    "headers": SCHEMA, "payload": SCHEMA, "correlationId": {"type": "object"}, "contentType": TEXT, "name": TEXT,
    "title": TEXT, "summary": TEXT, "description": TEXT, "tags": TAGS, "externalDocs": {"type": "object"},
    "bindings": BINDINGS, "examples": {"type": "array"}, "traits": {"type": "array"},
})
CHANNEL = obj({
    "address": {"type": ["string", "null"]}, "messages": named_map(ref_or(MESSAGE)), "title": TEXT, "summary": TEXT,
    "description": TEXT, "servers": {"type": "array", "items": REF}, "parameters": named_map(ref_or(PARAMETER)),
    "tags": TAGS, "externalDocs": {"type": "object"}, "bindings": BINDINGS,
})
REPLY = obj({"address": {"type": "object"}, "channel": REF, "messages": {"type": "array", "items": REF}})
OPERATION = obj({
    "action": {"enum": ["send", "receive"]}, "channel": REF, "messages": {"type": "array", "items": REF}, "title": TEXT,
    "summary": TEXT, "description": TEXT, "security": {"type": "array"}, "tags": TAGS, "externalDocs": {"type": "object"},
    "bindings": BINDINGS, "traits": {"type": "array"}, "reply": ref_or(REPLY),
}, required=["action", "channel"])
STRUCTURE = obj({
    "asyncapi": {"const": "3.0.0"}, "id": TEXT,
    "info": obj({"title": TEXT, "version": TEXT, "description": TEXT, "termsOfService": TEXT, "contact": {"type": "object"},
                 "license": {"type": "object"}, "tags": TAGS, "externalDocs": {"type": "object"}}, required=["title", "version"]),
    "servers": {"type": "object"}, "defaultContentType": TEXT,
    "channels": named_map(ref_or(CHANNEL)), "operations": named_map(ref_or(OPERATION)),
    "components": obj({
        "schemas": named_map(SCHEMA), "servers": {"type": "object"}, "channels": named_map(ref_or(CHANNEL)),
        "operations": named_map(ref_or(OPERATION)), "messages": named_map(ref_or(MESSAGE)),
        "securitySchemes": {"type": "object"}, "serverVariables": {"type": "object"}, "parameters": named_map(ref_or(PARAMETER)),
        "correlationIds": {"type": "object"}, "replies": named_map(ref_or(REPLY)), "replyAddresses": {"type": "object"},
        "externalDocs": {"type": "object"}, "tags": {"type": "object"}, "operationTraits": {"type": "object"},
        "messageTraits": {"type": "object"}, "serverBindings": {"type": "object"}, "channelBindings": {"type": "object"},
        "operationBindings": {"type": "object"}, "messageBindings": {"type": "object"},
    }),
}, required=["asyncapi", "info"])


def pointer(document, fragment, where):
    node = document
    for part in [p.replace("~1", "/").replace("~0", "~") for p in fragment.lstrip("/").split("/") if p]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise LookupError(f"{where}: no '{fragment}'")
    return node


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "schemas/asyncapi.yaml")
    root = path.parent
    document = yaml.safe_load(path.read_text())
    problems = []

    official = os.environ.get("ASYNCAPI_SCHEMA")
    if official:
        schema = json.loads(Path(official).read_text())
        for error in jsonschema.Draft7Validator(schema).iter_errors(document):
            problems.append(f"AsyncAPI 3.0.0 schema: {list(error.absolute_path)}: {error.message[:300]}")
    for error in jsonschema.Draft202012Validator(STRUCTURE).iter_errors(document):
        problems.append(f"structure: {list(error.absolute_path)}: {error.message[:300]}")

    # Every reference, followed through the files it names.
    loaded = {}
    pending = [(path, ref) for ref in refs(document)]
    seen = set()
    while pending:
        origin, ref = pending.pop()
        target, _, fragment = ref.partition("#")
        file = (origin.parent / target).resolve() if target else origin.resolve()
        if (file, fragment) in seen:
            continue
        seen.add((file, fragment))
        if file not in loaded:
            if not file.is_file():
                problems.append(f"{origin.name}: $ref '{ref}': no file {file}")
                continue
            loaded[file] = yaml.safe_load(file.read_text()) if file.suffix == ".yaml" else json.loads(file.read_text())
            if file.suffix == ".json":
                try:
                    jsonschema.validators.validator_for(loaded[file]).check_schema(loaded[file])
                except jsonschema.SchemaError as error:
                    problems.append(f"{file.relative_to(root.resolve())}: not a valid JSON Schema: {error.message}")
                pending += [(file, inner) for inner in refs(loaded[file])]
        try:
            pointer(loaded[file], fragment, f"{origin.name}: $ref '{ref}'")
        except LookupError as error:
            problems.append(str(error))

    reached = {file for file in loaded if file.suffix == ".json"}
    for file in sorted(root.resolve().rglob("*.schema.json")):
        if file not in reached:
            problems.append(f"{file.relative_to(root.resolve())}: not reachable from {path.name}")

    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{path}: OK (AsyncAPI 3.0.0 structure{', official schema' if official else ''}; {len(reached)} JSON Schemas reachable, all valid)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
