# Guest script of `cargo xtask bench live`: times a burst of veth pair
# creations and deletions with and without `vethtrace watch --json`
# attached, measures the latency of each line and the tracer's context
# switches while idle. It prints its results as `vtlb-*` lines, which the
# xtask reads from the serial console.
#
# Arguments: PAIRS ROUNDS IDLE_SECONDS DRAIN_LIMIT_SECONDS [WATCH_ARGS...]
#
# The xtask appends the gzipped, base64-encoded `watch_latency` example
# after the `__VTLB_READER__` line at the end; the guest has no Python and
# no compiler, and vm-run copies only the script and the vethtrace binary.
# Every name this script creates starts with `vtlb`.

pairs=$1
rounds=$2
idle_seconds=$3
drain_limit=$4
shift 4

reader=/tmp/vtlb-reader
status_file=/tmp/vtlb-status
sed '1,/^__VTLB_READER__$/d' "$0" | base64 -d | gunzip >"$reader" && chmod +x "$reader" || {
    echo "vtlb-error failed to unpack watch_latency from $0"
    exit 1
}

echo "vtlb-kernel $(uname -r)"
echo "vtlb-cpus $(grep -c '^processor' /proc/cpuinfo)"

# One `ip -batch` file per phase: PAIRS pair creations, then PAIRS
# deletions (deleting one end of a veth deletes both).
i=0
while [ "$i" -lt "$pairs" ]; do
    echo "link add vtlb$i type veth peer name vtlbp$i" >&3
    echo "link del vtlb$i" >&4
    i=$((i + 1))
done 3>/tmp/vtlb-add.batch 4>/tmp/vtlb-del.batch

# burst LABEL: creates then deletes every pair, each phase timed on its own.
burst() {
    "$reader" time "$1-add" ip -batch /tmp/vtlb-add.batch || return 1
    "$reader" time "$1-del" ip -batch /tmp/vtlb-del.batch || return 1
    sleep 1
}

# wait_status LINE SECONDS: waits until the reader wrote LINE to the status
# file. Returns 2 after a `lost` line, 3 when the tracer exited, 1 after
# SECONDS.
wait_status() {
    tries=0
    while ! grep -qx "$1" "$status_file"; do
        grep -qx lost "$status_file" && return 2
        kill -0 "$watch_pid" 2>/dev/null || return 3
        [ "$tries" -ge $(($2 * 2)) ] && return 1
        sleep 0.5
        tries=$((tries + 1))
    done
    return 0
}

# context_switches PID: voluntary and involuntary context switches summed
# over the threads of PID, and the number of threads.
context_switches() {
    cat /proc/"$1"/task/*/status | awk '
        /^voluntary_ctxt_switches:/ { voluntary += $2 }
        /^nonvoluntary_ctxt_switches:/ { involuntary += $2 }
        END { print voluntary + 0, involuntary + 0 }'
    ls /proc/"$1"/task | wc -l
}

status=0

# (a) Without the tracer: one warm-up burst, then ROUNDS timed ones.
burst warmup || exit 1
round=1
while [ "$round" -le "$rounds" ]; do
    burst "bare-$round" || exit 1
    round=$((round + 1))
done

# (b) With the tracer. The marker pair exists before `watch` starts, so its
# `present` line means the initial snapshot is out and the burst cannot
# race it.
ip link add vtlbm0 type veth peer name vtlbm1 || exit 1
: >"$status_file"
mkfifo /tmp/vtlb-fifo
"$reader" read --pairs "$pairs" --rounds "$rounds" --ready vtlbm0 --status "$status_file" \
    </tmp/vtlb-fifo >/tmp/vtlb-reader.out &
reader_pid=$!
vethtrace watch --json "$@" >/tmp/vtlb-fifo 2>/tmp/vtlb-watch.err &
watch_pid=$!
echo "vtlb-watch-args $*"

if wait_status ready 180; then
    ring_size=$(bpftool map list | awk '/ name EVENTS / { found = 1; next } found { for (i = 1; i < NF; i++) if ($i == "max_entries") print $(i + 1); exit }')
    echo "vtlb-ring-size ${ring_size:-unknown}"
    round=1
    while [ "$round" -le "$rounds" ]; do
        burst "traced-$round" || { status=1; break; }
        wait_status "round $round" "$drain_limit"
        result=$?
        case $result in
            0) ;;
            1) echo "vtlb-error round $round: not every line arrived within $drain_limit s"; status=1; break ;;
            2) echo "vtlb-error round $round: vethtrace printed a lost line"; status=1; break ;;
            *) echo "vtlb-error round $round: vethtrace exited"; status=1; break ;;
        esac
        round=$((round + 1))
    done

    if [ "$status" = 0 ]; then
        # Idle: no veth changes and nothing else running but this shell's
        # sleep. The tracer should sleep in epoll_wait the whole time.
        sleep 2
        before=$(context_switches "$watch_pid" | tr '\n' ' ')
        sleep "$idle_seconds"
        after=$(context_switches "$watch_pid" | tr '\n' ' ')
        echo "vtlb-idle $idle_seconds $before $after"
    fi
else
    echo "vtlb-error vethtrace watch printed no initial state within 180 s"
    status=1
fi

kill -TERM "$watch_pid" 2>/dev/null
wait "$watch_pid"
echo "vtlb-watch-exit $?"
wait "$reader_pid"
cat /tmp/vtlb-reader.out
sed 's/^/vtlb-watch-stderr /' /tmp/vtlb-watch.err
ip link del vtlbm0 2>/dev/null
exit "$status"
