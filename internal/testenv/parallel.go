package testenv

import (
	"flag"
	"strconv"
)

// Parallel lets n of a test binary's parallel tests run at once, unless
// the command line set -test.parallel. The default, GOMAXPROCS, suits
// tests that compute; a package whose tests mostly wait (on timers,
// leases, sockets, another process) leaves the cores idle with it. Call
// it from TestMain, before m.Run.
func Parallel(n int) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			panic(err) // the testing package defines it before TestMain runs
		}
	}
}
