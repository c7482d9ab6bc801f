#!/usr/bin/env bash
# Chromium for the HTML report's browser test (tests/test_report_cli.py): Debian's package,
# installed where apt-get can (as root, as in CI). Never fails: without a browser that one test
# is skipped, with the reason.
command -v chromium >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # bounded: a package mirror that does not answer must not hold the test run up
    timeout 300 apt-get install -y -q chromium >/dev/null 2>&1 \
        || { timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 300 apt-get install -y -q chromium >/dev/null 2>&1; } \
        || true
fi
command -v chromium >/dev/null 2>&1 \
    || echo "note: Chromium is not installed here; the HTML report's browser test will be skipped"
exit 0
