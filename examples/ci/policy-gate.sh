#!/usr/bin/env bash
# The pull-request gate for a bundle change: build → test → lint --base →
# replay --against → readiness. Fails the check on any finding.
#
#   examples/ci/policy-gate.sh <bundle.toml> <base bundle.toml> <cases.json> <traces or audit logs...>
#
# The base bundle is the one on the target branch (e.g. checked out with
# `git worktree add ../base origin/main`).
set -euo pipefail
bundle=$1 base=$2 cases=$3
shift 3
arbiter=${ARBITER:-target/debug/arbiter}
components=$(dirname "$bundle")/components

echo "::group::build"
names=$(python3 -c 'import sys,tomllib; print(" ".join(p["name"] for p in tomllib.load(open(sys.argv[1],"rb"))["policies"]))' "$bundle")
for name in $names; do
    $arbiter build "policies/$name" --out "$components"
done
$arbiter pin --check "$bundle"        # the manifest pins what the sources build to
echo "::endgroup::"

echo "::group::test"
$arbiter test "$bundle" "$cases"
echo "::endgroup::"

echo "::group::lint"
$arbiter lint "$bundle" --base "$base"
echo "::endgroup::"

echo "::group::replay (decisions this change alters)"
$arbiter replay --quiet --bundle "$bundle" --against "$base" "$@"
echo "::endgroup::"

echo "::group::readiness"
$arbiter readiness "$bundle" --server-config "$(dirname "$bundle")/deployment.toml" --fail-below needs-work
echo "::endgroup::"
