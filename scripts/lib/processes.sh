# scripts/lib/processes.sh: what the benchmark and soak scripts share (sourced, never run).
#
# Before sourcing, set LOG_TAG (the word in each log line) and WORK_PREFIX (the temporary directory's
# name). It sets ROOT's neighbours it needs from the caller's ROOT, makes WORK, and defines:
#   log, die                  timestamped lines on stderr; die exits 1
#   PIDS, forget_pid, stop_pid  every process a script starts is in PIDS and is stopped by its PID at
#                             exit: SIGTERM, up to 5 s, then SIGKILL (cleanup, on EXIT)
#   close_extra_fds           in a subshell before exec: servers must not inherit the script's
#                             descriptors (C epmd can only use fds below 1024)
#   kv KEY LINE               the value of KEY in a "k=v k=v" line
#   start_server, start_hold  a server on a free port / a loadgen holder of registrations (need
#                             LOADGEN; PIN_CPU pins servers)
#   build_gateway ATTEMPTS    sets GATEWAY_BIN: $EPMD_GATEWAY_BIN, or a release build in .build-bench
#                             (retried: another build may hold the lock)

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$WORK_PREFIX.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if declare -F extra_cleanup >/dev/null; then extra_cleanup || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

close_extra_fds() {
    local f n
    for f in /proc/$BASHPID/fd/*; do
        n=${f##*/}
        if [ "$n" -gt 2 ]; then eval "exec $n>&-" 2>/dev/null || true; fi
    done
}

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# start_server LABEL BIN ARGS... -> LAST_PID, LAST_PORT (the server listens on LAST_PORT)
start_server() {
    local label=$1 bin=$2 port
    shift 2
    port=$("$LOADGEN" freeport)
    (
        close_extra_fds
        exec env -u ERL_EPMD_ADDRESS -u ERL_EPMD_PORT -u ERL_EPMD_RELAXED_COMMAND_CHECK \
            ${PIN_CPU:+taskset -c "$PIN_CPU"} "$bin" -port "$port" "$@"
    ) </dev/null >"$WORK/$label.log" 2>&1 &
    LAST_PID=$!
    LAST_PORT=$port
    PIDS+=("$LAST_PID")
    local i
    for i in $(seq 1 100); do
        if "$LOADGEN" wait --port "$port" --seconds 0.1 >/dev/null; then return 0; fi
        if ! kill -0 "$LAST_PID" 2>/dev/null; then break; fi
    done
    log "$label ($bin -port $port $*) did not answer NAMES within 10 s (or exited); its output:"
    tail -20 "$WORK/$label.log" >&2 || true
    die "$label did not start"
}

# start_hold LABEL PORT LOADGEN-HOLD-ARGS... -> LAST_PID, HOLD_LINE (ok=... fail_conn=...)
HOLD_SEQ=0
start_hold() {
    local label=$1 port=$2 rf
    shift 2
    HOLD_SEQ=$((HOLD_SEQ + 1))
    rf=$WORK/hold.$HOLD_SEQ.ready
    (
        close_extra_fds
        exec "$LOADGEN" hold --port "$port" --ready-file "$rf" --max-seconds 900 "$@"
    ) </dev/null >"$WORK/hold.$HOLD_SEQ.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    local waited=0
    while [ ! -f "$rf" ]; do
        kill -0 "$LAST_PID" 2>/dev/null || die "holder $label exited early: $(cat "$WORK/hold.$HOLD_SEQ.log")"
        [ "$waited" -lt 3000 ] || die "holder $label not ready after 300 s"
        sleep 0.1
        waited=$((waited + 1))
    done
    HOLD_LINE=$(cat "$rf")
}

kv() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

build_gateway() {
    local attempts=$1 attempt built=0
    if [ -n "${EPMD_GATEWAY_BIN:-}" ]; then
        GATEWAY_BIN=$EPMD_GATEWAY_BIN
        log "using EPMD_GATEWAY_BIN=$GATEWAY_BIN (no build)"
    else
        for attempt in $(seq 1 "$attempts"); do
            log "building epmd-gateway (release, .build-bench), attempt $attempt"
            if (cd "$ROOT" && swift build -c release --scratch-path .build-bench --product epmd-gateway) \
                >"$WORK/build.log" 2>&1; then
                built=1
                break
            fi
            tail -15 "$WORK/build.log" >&2
            if [ "$attempt" -lt "$attempts" ]; then log "build failed; retrying in 60 s"; sleep 60; fi
        done
        [ "$built" = 1 ] || die "swift build failed $attempts times"
        GATEWAY_BIN=$(cd "$ROOT" && swift build -c release --scratch-path .build-bench --show-bin-path)/epmd-gateway
    fi
    [ -x "$GATEWAY_BIN" ] || die "gateway binary not found: $GATEWAY_BIN"
}
