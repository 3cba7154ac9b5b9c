package testenv

import (
	"flag"
	"os"
	"strconv"
	"testing"
)

// Parallel makes n the -test.parallel of a test binary whose command line
// did not set it; TestMain calls it before m.Run. Tests that wait on
// protocol timers, leases, sockets, emulated networks or another process
// far more than they compute spend most of their wall time idle, so the
// default of one parallel test per core leaves the machine idle and the
// package slow.
func Parallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			panic(err) // the testing package defines it before TestMain runs
		}
	}
}

// MainParallel is a TestMain running n tests at once (Parallel).
func MainParallel(m *testing.M, n int) {
	Parallel(n)
	os.Exit(m.Run())
}
