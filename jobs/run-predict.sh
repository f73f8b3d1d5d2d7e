#!/bin/sh
# Run `batchdigits predict` the way a scheduler should: incremental, one run at a time,
# silent when all is well (cron mails only failures), a JSON summary for monitoring and a
# summary of each run (summaries/summary-TIME-PID.json; latest.json is the newest).
#
#   run-predict.sh [INPUT_DIR OUTPUT_CSV] [more batchdigits predict options]
#
# Settings, from the environment or from a config file of VAR=value lines
# ($BATCHDIGITS_CONFIG, default: predict.conf beside this script, if it exists);
# the environment wins over the file, arguments over both:
#   BATCHDIGITS_VENV     the virtual environment to activate (default: ../.venv)
#   BATCHDIGITS_INPUT    the folder of images
#   BATCHDIGITS_OUTPUT   the CSV to write
#   BATCHDIGITS_SUMMARIES  folder for the summaries (default: OUTPUT's folder/summaries)
#   BATCHDIGITS_WAIT     seconds to wait for a previous run still writing (default 0: exit 75)
#   BATCHDIGITS_OPTIONS  more predict options, e.g. "--probabilities"
# Exit codes: those of `batchdigits predict` (README, "Exit codes"); 2 for bad settings.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
config=${BATCHDIGITS_CONFIG:-$here/predict.conf}
if [ -f "$config" ]; then
    # Only the settings above are read, and the environment keeps precedence.
    while IFS='=' read -r key value; do
        case $key in
            BATCHDIGITS_VENV) BATCHDIGITS_VENV=${BATCHDIGITS_VENV:-$value} ;;
            BATCHDIGITS_INPUT) BATCHDIGITS_INPUT=${BATCHDIGITS_INPUT:-$value} ;;
            BATCHDIGITS_OUTPUT) BATCHDIGITS_OUTPUT=${BATCHDIGITS_OUTPUT:-$value} ;;
            BATCHDIGITS_SUMMARIES) BATCHDIGITS_SUMMARIES=${BATCHDIGITS_SUMMARIES:-$value} ;;
            BATCHDIGITS_WAIT) BATCHDIGITS_WAIT=${BATCHDIGITS_WAIT:-$value} ;;
            BATCHDIGITS_OPTIONS) BATCHDIGITS_OPTIONS=${BATCHDIGITS_OPTIONS:-$value} ;;
        esac
    done <"$config"
fi

if [ "$#" -ge 2 ]; then
    BATCHDIGITS_INPUT=$1
    BATCHDIGITS_OUTPUT=$2
    shift 2
fi
if [ -z "${BATCHDIGITS_INPUT:-}" ] || [ -z "${BATCHDIGITS_OUTPUT:-}" ]; then
    echo "usage: $0 INPUT_DIR OUTPUT_CSV [predict options]" >&2
    echo "  (or set BATCHDIGITS_INPUT and BATCHDIGITS_OUTPUT, in the environment or $config)" >&2
    exit 2
fi

PATH=/usr/local/bin:/usr/bin:/bin${PATH:+:$PATH}
export PATH
LC_ALL=C.UTF-8
export LC_ALL
umask 022

venv=${BATCHDIGITS_VENV:-$here/../.venv}
if [ ! -f "$venv/bin/activate" ]; then
    echo "run-predict: no virtual environment at $venv; set BATCHDIGITS_VENV" >&2
    exit 2
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

summaries=${BATCHDIGITS_SUMMARIES:-$(dirname "$BATCHDIGITS_OUTPUT")/summaries}
mkdir -p "$summaries"
# Each run's summary has a name of its own (UTC time, then this shell's PID, then a
# counter if that is taken), so two runs in the same second never overwrite each other;
# latest.json is a copy of the newest, replaced atomically.
stamp=$(date -u +%Y%m%dT%H%M%SZ)
summary=$summaries/summary-$stamp-$$.json
n=1
while [ -e "$summary" ]; do
    summary=$summaries/summary-$stamp-$$-$n.json
    n=$((n + 1))
done

status=0
# BATCHDIGITS_OPTIONS is split into words on purpose.
# shellcheck disable=SC2086
batchdigits predict "$BATCHDIGITS_INPUT" --output "$BATCHDIGITS_OUTPUT" \
    --incremental --quiet --wait-lock "${BATCHDIGITS_WAIT:-0}" \
    --summary-json "$summary" ${BATCHDIGITS_OPTIONS:-} "$@" || status=$?
if [ -f "$summary" ]; then
    cp "$summary" "$summaries/.latest-$$.tmp" && mv -f "$summaries/.latest-$$.tmp" "$summaries/latest.json"
fi
exit "$status"
