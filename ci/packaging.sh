#!/usr/bin/env bash
# What a release needs beyond the tests: the gate math compiles with GCC and
# Clang (-Werror) and in strict ISO C, and computes right each way; the
# workflows pass their linters; cibuildwheel parses its configuration for every
# platform; the sdist holds every tracked file a packager needs (ci/test.sh runs
# its tests against the wheel built from it).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TMP="$(mktemp -d "$WORK/packaging.XXXXXX")"

# apt_install PACKAGE: from Debian/Ubuntu (as root, or through sudo on a CI runner).
apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y -qq "$1" >/dev/null \
        || { $sudo apt-get update -qq && $sudo apt-get install -y -qq "$1" >/dev/null; }
}

echo "== the gate math with each compiler"
command -v clang >/dev/null || apt_install clang
for compiler in "gcc" "clang" "gcc -std=c99 -pedantic-errors" "clang -std=c11 -pedantic-errors"; do
    # shellcheck disable=SC2086
    $compiler -O3 -fno-trapping-math -Wall -Wextra -Werror -I"$REPO/cylstm" \
        -o "$TMP/gates_check" "$REPO/ci/gates_check.c" -lm
    printf '%-32s ' "$compiler:"
    "$TMP/gates_check"
done

# Arm64 has no clones: the plain loops must compile there and the vectoriser
# must turn them into NEON (cross-compiled to assembly with Debian's arm64 libc headers).
ARM_SYSROOT=/usr/aarch64-linux-gnu
[ -e "$ARM_SYSROOT/include/math.h" ] || apt_install libc6-dev-arm64-cross
clang --target=aarch64-linux-gnu --sysroot="$ARM_SYSROOT" -O3 -fno-trapping-math -Wall -Wextra -Werror \
    -I"$REPO/cylstm" -S -o "$TMP/gates_check_arm64.s" "$REPO/ci/gates_check.c"
neon="$(grep -c -E 'v[0-9]+\.4s' "$TMP/gates_check_arm64.s" || true)"
echo "clang --target=aarch64-linux-gnu: $neon NEON float32x4 instructions"
[ "$neon" -gt 0 ]

new_venv "$TMP/tools"
"$TMP/tools/bin/pip" install --quiet zizmor check-jsonschema cibuildwheel

echo "== the workflows: GitHub's schema, then zizmor's audits"
"$TMP/tools/bin/check-jsonschema" --builtin-schema vendor.github-workflows \
    "$REPO"/.github/workflows/*.yml
"$TMP/tools/bin/zizmor" --offline --no-progress --config "$REPO/ci/zizmor.yml" "$REPO"/.github/workflows/

echo "== cibuildwheel's wheels for each platform"
for platform in linux macos windows; do
    identifiers="$(cd "$REPO" && "$TMP/tools/bin/cibuildwheel" --print-build-identifiers --platform "$platform")"
    echo "$platform: $(echo "$identifiers" | wc -l) wheels: $(echo "$identifiers" | tr '\n' ' ')"
    [ -n "$identifiers" ]
done

echo "== the sdist holds every tracked file it should"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tar -tzf "$(the_sdist)" | sed 's|^[^/]*/||' | sort > "$TMP/sdist"
    git -C "$REPO" ls-files -- LICENSE CHANGELOG.md README.md pyproject.toml setup.py \
        cylstm tests examples benchmarks ci | sort > "$TMP/tracked"
    missing="$(comm -23 "$TMP/tracked" "$TMP/sdist")"
    if [ -n "$missing" ]; then
        echo "the sdist lacks: $missing" >&2
        exit 1
    fi
    echo "$(wc -l < "$TMP/tracked") tracked files, all in $(basename "$(the_sdist)")"
else
    echo "not a git checkout: nothing to compare the sdist with"
fi
