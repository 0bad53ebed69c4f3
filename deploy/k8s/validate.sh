#!/usr/bin/env bash
# Render every overlay and validate it against the Kubernetes and Strimzi schemas, the compose
# file against the Compose schema, and lint the image's Dockerfile (deploy/manifests.py says how).
# Needs Go (kubeconform is built from the Go module proxy into .cache/bin), kubectl or Go for
# kustomize, Node.js and npm, and the project's .venv (`make install`). Exit 0 valid, 1 invalid,
# 2 a tool missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec "${PYTHON:-.venv/bin/python}" -m deploy.manifests "$@"
