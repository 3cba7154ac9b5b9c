package perf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/PID/stat's times: fixed at 100 by Linux's
// ABI (USER_HZ), whatever the kernel's own tick rate.
const userHZ = 100

// cpuTicks is the user plus system time of the processes, in USER_HZ ticks.
func cpuTicks(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("CPU time of pid %d: %w", pid, err)
		}
		t, err := parseStatTicks(string(b))
		if err != nil {
			return 0, fmt.Errorf("CPU time of pid %d: %w", pid, err)
		}
		sum += t
	}
	return sum, nil
}

// parseStatTicks reads utime and stime (fields 14 and 15, proc(5)) from a
// /proc/PID/stat line. The command name (field 2) is in parentheses and
// may hold spaces and parentheses, so fields are counted after the last ')'.
func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q has no command name", firstLine(stat))
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat has %d fields after the command name, want at least 13", len(f))
	}
	var sum uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat time %q: %w", s, err)
		}
		sum += v
	}
	return sum, nil
}

// cpuPercent is ticks of CPU time over a wall-clock span, in percent of
// one core.
func cpuPercent(ticks uint64, wall time.Duration) float64 {
	return float64(ticks) / userHZ / wall.Seconds() * 100
}
