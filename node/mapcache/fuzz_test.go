package mapcache

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode: a cache file is hostile input. Whatever it holds, decode
// returns an error or a map that passes its checks and decodes the same
// after another encode.
func FuzzDecode(f *testing.F) {
	o := Owner{Overlay: overlay}
	o.Node[0], o.Coordinator[0] = 1, 2
	good, err := encode(o, sample(f, o), time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"updated":"2026-11-30T09:00:00Z","map":{"peers":[{}]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, updated, err := decode(FileName, b, o)
		if err != nil {
			return
		}
		if err := m.check(o); err != nil {
			t.Fatalf("decode accepted a map its checks refuse: %v", err)
		}
		b2, err := encode(o, m, updated)
		if err != nil {
			t.Fatalf("encode of a decoded map: %v", err)
		}
		again, againUpdated, err := decode(FileName, b2, o)
		if err != nil {
			t.Fatalf("decode after encode: %v", err)
		}
		want, _ := json.Marshal(m)
		got, _ := json.Marshal(again)
		if string(want) != string(got) || !againUpdated.Equal(updated) {
			t.Fatalf("encode and decode changed the map:\n%s\n%s", want, got)
		}
	})
}
