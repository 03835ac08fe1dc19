# Guest script of `cargo xtask bench live`: times a burst of veth pair
# creations and deletions without and with `vethtrace watch --json`
# attached, and prints its results as `vtlb-*` lines that the xtask reads
# from the serial console.
#
# Arguments: ROUND ORDER PAIRS IDLE_SECONDS DRAIN_LIMIT_SECONDS [WATCH_ARGS...]
#
# A burst is one `ip -batch` that creates PAIRS pairs `vtlbI`/`vtlbpI` and
# one that deletes them. After an untimed warm-up burst the script times
# two bursts, labelled `bare-ROUND` and `traced-ROUND`, in the ORDER given:
# `bare,traced` or `traced,bare`. For the traced burst it starts
# `vethtrace watch --json WATCH_ARGS` with its output piped into
# `watch_latency read`, waits until every line of the burst arrived, counts
# the tracer's context switches over IDLE_SECONDS without changes, and
# stops it with SIGTERM.
#
# The xtask appends the gzipped, base64-encoded `watch_latency` example
# after the `__VTLB_READER__` line at the end: vm-run copies only this
# script and the vethtrace binary into the guest, which has no Python.
# Every name this script creates starts with `vtlb`.

round=$1
order=$2
pairs=$3
idle_seconds=$4
drain_limit=$5
shift 5

reader=/tmp/vtlb-reader
status_file=/tmp/vtlb-status
sed '1,/^__VTLB_READER__$/d' "$0" | base64 -d | gunzip >"$reader" && chmod +x "$reader" || {
    echo "vtlb-error failed to unpack watch_latency from $0"
    exit 1
}

echo "vtlb-kernel $(uname -r)"
echo "vtlb-cpus $(grep -c '^processor' /proc/cpuinfo)"

i=0
while [ "$i" -lt "$pairs" ]; do
    echo "link add vtlb$i type veth peer name vtlbp$i" >&3
    # Deleting one end of a veth deletes both.
    echo "link del vtlb$i" >&4
    i=$((i + 1))
done 3>/tmp/vtlb-add.batch 4>/tmp/vtlb-del.batch

# burst LABEL: creates then deletes every pair, timing each phase.
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
# over the threads of PID, then the number of threads.
context_switches() {
    cat /proc/"$1"/task/*/status | awk '
        /^voluntary_ctxt_switches:/ { voluntary += $2 }
        /^nonvoluntary_ctxt_switches:/ { involuntary += $2 }
        END { print voluntary + 0, involuntary + 0 }'
    ls /proc/"$1"/task | wc -l
}

# bpf_run_time: nanoseconds spent in all loaded BPF programs and their
# number of runs, summed, as the kernel counts them while
# kernel.bpf_stats_enabled is 1. The guest loads no programs but vethtrace's.
bpf_run_time() {
    bpftool prog show | awk '
        { for (i = 1; i < NF; i++) { if ($i == "run_time_ns") ns += $(i + 1); if ($i == "run_cnt") runs += $(i + 1) } }
        END { print ns + 0, runs + 0 }'
}

# cpu_ticks PID: user plus system CPU time of PID in clock ticks (USER_HZ).
cpu_ticks() {
    awk '{ print $14 + $15 }' /proc/"$1"/stat
}

# traced_burst LABEL WATCH_ARGS...: the burst with the tracer attached, then
# the idle count. Prints the reader's summary and latencies.
traced_burst() {
    label=$1
    shift
    # The marker pair exists before `watch` starts, so its `present` line
    # means that the initial snapshot is out and the burst cannot race it.
    ip link add vtlbm0 type veth peer name vtlbm1 || return 1
    : >"$status_file"
    rm -f /tmp/vtlb-fifo
    mkfifo /tmp/vtlb-fifo
    "$reader" read --pairs "$pairs" --rounds 1 --ready vtlbm0 --status "$status_file" \
        </tmp/vtlb-fifo >/tmp/vtlb-reader.out &
    reader_pid=$!
    vethtrace watch --json "$@" >/tmp/vtlb-fifo 2>/tmp/vtlb-watch.err &
    watch_pid=$!
    echo "vtlb-watch-args $*"

    result=0
    if wait_status ready 180; then
        ring_size=$(bpftool map list | awk '
            / name EVENTS / { found = 1; next }
            found { for (i = 1; i < NF; i++) if ($i == "max_entries") print $(i + 1); exit }')
        echo "vtlb-ring-size ${ring_size:-unknown}"
        watch_ticks=$(cpu_ticks "$watch_pid")
        reader_ticks=$(cpu_ticks "$reader_pid")
        # Costs two clock reads per program run, and tells how much of the
        # burst the programs themselves took.
        echo 1 >/proc/sys/kernel/bpf_stats_enabled
        burst "$label" || result=1
        if [ "$result" = 0 ]; then
            wait_status "round 1" "$drain_limit"
            case $? in
                0) ;;
                1) echo "vtlb-error $label: not every line arrived within $drain_limit s"; result=1 ;;
                2) echo "vtlb-error $label: vethtrace printed a lost line"; result=1 ;;
                *) echo "vtlb-error $label: vethtrace exited"; result=1 ;;
            esac
        fi
        echo "vtlb-cpu $(($(cpu_ticks "$watch_pid") - watch_ticks)) $(($(cpu_ticks "$reader_pid") - reader_ticks))"
        echo "vtlb-bpf-run-time $(bpf_run_time)"
        echo 0 >/proc/sys/kernel/bpf_stats_enabled

        if [ "$result" = 0 ] && [ "$idle_seconds" -gt 0 ]; then
            # Nothing changes and nothing else runs but this shell's
            # sleep, so the tracer should stay asleep in epoll_wait.
            sleep 2
            before=$(context_switches "$watch_pid" | tr '\n' ' ')
            sleep "$idle_seconds"
            after=$(context_switches "$watch_pid" | tr '\n' ' ')
            echo "vtlb-idle $idle_seconds $before $after"
        fi
    else
        echo "vtlb-error vethtrace watch printed no initial state within 180 s"
        result=1
    fi

    kill -TERM "$watch_pid" 2>/dev/null
    wait "$watch_pid"
    echo "vtlb-watch-exit $?"
    wait "$reader_pid"
    cat /tmp/vtlb-reader.out
    sed 's/^/vtlb-watch-stderr /' /tmp/vtlb-watch.err
    ip link del vtlbm0 2>/dev/null
    return "$result"
}

burst warmup || exit 1
case $order in
    bare,traced)
        burst "bare-$round" || exit 1
        traced_burst "traced-$round" "$@" || exit 1
        ;;
    traced,bare)
        traced_burst "traced-$round" "$@" || exit 1
        burst "bare-$round" || exit 1
        ;;
    *)
        echo "vtlb-error ORDER must be bare,traced or traced,bare, not $order"
        exit 2
        ;;
esac
exit 0
