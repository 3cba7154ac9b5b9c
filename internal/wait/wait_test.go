package wait

import (
	"errors"
	"testing"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	For(t, Interval*100, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}
}

// fakeT records a Fatalf instead of ending the test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = format
	panic(f)
}

func TestForNilFailsWithTheLastError(t *testing.T) {
	f := &fakeT{TB: t}
	defer func() {
		if r := recover(); r != f {
			t.Fatalf("no failure after the deadline: %v", r)
		}
	}()
	ForNil(f, Interval, "never", func() error { return errors.New("still down") })
}
