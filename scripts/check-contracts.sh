#!/usr/bin/env bash
# The two contracts in the ecosystem's validators, as `make test` runs them: schemas/openapi.yaml
# with openapi-spec-validator, schemas/asyncapi.yaml with scripts/check_asyncapi.py (AsyncAPI 3.0.0
# structure, every $ref and JSON Schema; see its header for the official schema, ASYNCAPI_SCHEMA).
# Installs what is missing from PyPI; reads only, so running it twice changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v openapi-spec-validator >/dev/null; then
    python3 -m pip install --quiet --root-user-action=ignore openapi-spec-validator
fi
if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
    python3 -m pip install --quiet --root-user-action=ignore jsonschema pyyaml
fi

openapi-spec-validator schemas/openapi.yaml
python3 scripts/check_asyncapi.py schemas/asyncapi.yaml
