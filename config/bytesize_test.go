package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		ok   bool
		out  string
	}{
		{"", 0, true, ""},
		{"450MiB", 450 << 20, true, "450MiB"},
		{"2GiB", 2 << 30, true, "2GiB"},
		{"1536MiB", 1536 << 20, true, "1536MiB"},
		{"1TiB", 1 << 40, true, "1TiB"},
		{"64KiB", 64 << 10, true, "64KiB"},
		{"1000", 1000, true, "1000B"},
		{"1000B", 1000, true, "1000B"},
		{"1048576", 1 << 20, true, "1MiB"},
		{"450MB", 0, false, ""},
		{"450 MiB", 0, false, ""},
		{"-1MiB", 0, false, ""},
		{"MiB", 0, false, ""},
		{"1.5GiB", 0, false, ""},
		{"9999999999TiB", 0, false, ""},
		{"lots", 0, false, ""},
	} {
		var b ByteSize
		err := b.UnmarshalText([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%q: error %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if b != tc.want || b.String() != tc.out {
			t.Errorf("%q: %d (%q), want %d (%q)", tc.in, b, b.String(), tc.want, tc.out)
		}
	}
}

// memory_limit comes from a file, the environment or a flag, is checked
// against its floor, and a bad value's error names the key.
func TestMemoryLimitKey(t *testing.T) {
	load := func(file string, args ...string) (Coordinator, error) {
		defaults := DefaultCoordinator()
		fs := pflag.NewFlagSet("coordinator", pflag.ContinueOnError)
		AddFlags(fs, &defaults)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		c := DefaultCoordinator()
		_, err := Load(&c, file, "", fs)
		if err == nil {
			err = c.Validate()
		}
		return c, err
	}
	if c, err := load(""); err != nil || c.MemoryLimit != 0 {
		t.Fatalf("default: memory_limit %v, %v; want none", c.MemoryLimit, err)
	}
	if c, err := load(writeFile(t, "memory_limit: 450MiB\n")); err != nil || c.MemoryLimit != 450<<20 {
		t.Fatalf("from a file: memory_limit %v, %v; want 450MiB", c.MemoryLimit, err)
	}
	if c, err := load(writeFile(t, "memory_limit: 450MiB\n"), "--memory-limit", "1GiB"); err != nil || c.MemoryLimit != 1<<30 {
		t.Fatalf("flag over file: memory_limit %v, %v; want 1GiB", c.MemoryLimit, err)
	}
	for _, bad := range []string{"450MB", "16MiB"} {
		_, err := load(writeFile(t, "memory_limit: "+bad+"\n"))
		if err == nil || !strings.Contains(err.Error(), "memory_limit") || !strings.Contains(err.Error(), bad) {
			t.Errorf("memory_limit %s: error %v, want one naming the key and the value", bad, err)
		}
	}
}
