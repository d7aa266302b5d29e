#!/usr/bin/env bash
# Builds what e2e/test/deploy.test.mjs needs to check the chart and the
# Docker files without Helm or Docker: the chart renderer (helm/render, Go's
# text/template + Debian's sprig, built offline in GOPATH mode against
# /usr/share/gocode) and kubernetes-validate in a venv under target/.
#   apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/deploy-tools
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$PWD/target/deploy-tools/go-cache" GOFLAGS= \
  go build -o target/deploy-tools/render ./helm/render
if [ ! -x target/deploy-tools/venv/bin/kubernetes-validate ]; then
  python3 -m venv target/deploy-tools/venv
  target/deploy-tools/venv/bin/pip install -q kubernetes-validate
fi
