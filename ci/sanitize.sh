#!/usr/bin/env bash
# The kernel built with AddressSanitizer and UndefinedBehaviorSanitizer, and
# the test suite run against it: an out-of-bounds access, a use after free or
# undefined behaviour (signed overflow, a misaligned load) in compiled code
# stops the run with a report. CPython is not instrumented, so the sanitizer
# runtimes are preloaded. The frameworks (torch, onnx, keras) are left out:
# their tests skip here and run in ci/test.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

work="$(mktemp -d "$WORK/sanitize.XXXXXX")"  # $WORK is removed after the run

# Build from a copy of the source, so no sanitized object lands in the checkout
# and no generated .c or .so from the checkout gets into the build.
mkdir "$work/src"
tar -C "$REPO" -c --exclude=./.git --exclude=./build --exclude=./dist --exclude='*.so' \
    --exclude=./cylstm/_lstm.c --exclude=./bench-results . | tar -x -C "$work/src"

# setup.py's release flags (-O3, -g0, -Wl,-s) come after CFLAGS, and Python's
# own CFLAGS carry -fwrapv, which defines signed overflow and so hides it from
# UBSan. A compiler wrapper drops those and adds the sanitizer flags last.
cat > "$work/cc" <<'EOF'
#!/usr/bin/env bash
args=()
for arg in "$@"; do
    case "$arg" in -O|-O[0-9sgz]|-g0|-Wl,-s|-fwrapv) ;; *) args+=("$arg") ;; esac
done
exec gcc "${args[@]}" -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer -O1 -g
EOF
chmod +x "$work/cc"

new_venv "$work/venv"
"$work/venv/bin/pip" install --quiet numpy scipy pytest hypothesis threadpoolctl
CC="$work/cc" "$work/venv/bin/pip" install --quiet "$work/src"

# detect_leaks=0: CPython keeps objects alive until exit by design. Both stop
# at the first report with SIGABRT, so that pytest's faulthandler names the test.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"

cd "$work"
LD_PRELOAD="$preload" "$work/venv/bin/python" -m cylstm check
# --capture=sys: a report written to file descriptor 2 reaches the log even
# though the process dies in the middle of a test. This build keeps its debug
# info on purpose; the release build's lack of it is checked in ci/test.sh.
LD_PRELOAD="$preload" "$work/venv/bin/python" -m pytest "$REPO/tests" -p no:cacheprovider \
    --capture=sys -q -ra \
    --deselect tests/test_packaging.py::test_the_extension_has_no_runpath_and_no_debug_info "$@"
