#!/bin/sh
# Run batchdigits the way a scheduler should: incremental, one run at a time, silent
# when all is well (cron mails only failures), a JSON summary for monitoring.
#
#   batchdigits-cron.sh INPUT_DIR OUTPUT_CSV [more batchdigits predict options]
#
# Environment (all optional; cron gives a nearly empty one, so nothing else is assumed):
#   BATCHDIGITS       the batchdigits executable (default: the one on PATH, else the
#                     .venv beside this folder)
#   BATCHDIGITS_WAIT  seconds to wait for a previous run still writing (default 0: exit 75)
# Exit codes: those of `batchdigits predict` (README, "Exit codes").
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: $0 INPUT_DIR OUTPUT_CSV [batchdigits predict options]" >&2
    exit 2
fi
input=$1
output=$2
shift 2

PATH=/usr/local/bin:/usr/bin:/bin${PATH:+:$PATH}
export PATH
LC_ALL=C.UTF-8
export LC_ALL
umask 022

here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${BATCHDIGITS:-}" ]; then
    if command -v batchdigits >/dev/null 2>&1; then
        BATCHDIGITS=$(command -v batchdigits)
    else
        BATCHDIGITS=$here/../.venv/bin/batchdigits
    fi
fi
if [ ! -x "$BATCHDIGITS" ]; then
    echo "batchdigits-cron: cannot run $BATCHDIGITS; set BATCHDIGITS to the executable" >&2
    exit 2
fi

exec "$BATCHDIGITS" predict "$input" --output "$output" \
    --incremental --quiet --wait-lock "${BATCHDIGITS_WAIT:-0}" \
    --summary-json "$output.summary.json" "$@"
