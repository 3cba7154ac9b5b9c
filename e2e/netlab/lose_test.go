package netlab

import (
	"slices"
	"testing"
)

func TestOwnPorts(t *testing.T) {
	ss := `0      0      127.0.0.1:5432 127.0.0.1:41000 users:(("postgres",pid=50,fd=9))
0      0      127.0.0.1:41000 127.0.0.1:5432 users:(("meshnode",pid=7,fd=12))
0      0      198.18.0.2:8443 198.18.1.2:40000 users:(("meshnode",pid=7,fd=13))
0      0      [::1]:41002 [::1]:5432 users:(("meshnode",pid=7,fd=14))
0      0      127.0.0.1:41003 127.0.0.1:5432 users:(("meshnode",pid=77,fd=12))
`
	if got, want := ownPorts(ss, 7, 8443), []string{"41000", "41002"}; !slices.Equal(got, want) {
		t.Errorf("ownPorts = %v, want %v", got, want)
	}
}
