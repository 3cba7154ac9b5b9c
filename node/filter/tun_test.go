package filter

import (
	"bytes"
	"slices"
	"testing"

	"github.com/meshnode/meshnode/internal/packet/packettest"
	"github.com/meshnode/meshnode/tun/tuntest"
)

// offset is wireguard-go's: the room it keeps before each packet.
const offset = 16

// withHeadroom puts each packet behind wireguard-go's offset.
func withHeadroom(pkts ...[]byte) [][]byte {
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = append(make([]byte, offset), p...)
	}
	return out
}

// read runs one Read of batch through a TUN on home's node and returns
// which packets survived.
func read(t *testing.T, tt *TUN, dev *tuntest.Batch, batch ...[]byte) []bool {
	t.Helper()
	dev.Packets = batch
	bufs := make([][]byte, len(batch))
	for i := range bufs {
		bufs[i] = make([]byte, offset+1500)
	}
	sizes := make([]int, len(batch))
	n, err := tt.Read(bufs, sizes, offset)
	if err != nil || n != len(batch) {
		t.Fatalf("Read = %d, %v", n, err)
	}
	kept := make([]bool, n)
	for i := range n {
		kept[i] = sizes[i] == len(batch[i])
	}
	return kept
}

// The TUN on home's node: what home sends is filtered on Read, what it
// receives on Write; with no policy both pass untouched.
func TestTUN(t *testing.T) {
	web, ssh := tcp(home4, office4, 40000, 443, syn), tcp(home4, office4, 40000, 22, syn)
	webBack := tcp(office4, home4, 443, 40000, synAck)
	sshIn := tcp(office4, home4, 40000, 22, syn)
	pingIn := packettest.Echo(ip(office4, home4), false, 1)
	for _, tc := range []struct {
		name        string
		policy      bool
		filterSends bool
		wantRead    []bool
		wantWritten [][]byte
	}{
		{"no policy", false, true, []bool{true, true}, [][]byte{sshIn, webBack, pingIn}},
		// SSH out is dropped, but by the unfiltered-sender test build
		// (go test -tags meshnode_unfiltered_sender), which still filters
		// what it receives.
		{"policy", true, true, []bool{true, SendsUnfiltered}, [][]byte{webBack}},
		{"policy, sends unfiltered", true, false, []bool{true, true}, [][]byte{webBack}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, nil, Options{})
			if tc.policy {
				if err := f.Set(officePolicy(1)); err != nil {
					t.Fatal(err)
				}
			}
			dev := &tuntest.Batch{}
			tt := NewTUN(dev, f, tc.filterSends)
			if got := read(t, tt, dev, web, ssh); !slices.Equal(got, tc.wantRead) {
				t.Errorf("Read kept %v, want %v", got, tc.wantRead)
			}
			if _, err := tt.Write(withHeadroom(sshIn, webBack, pingIn), offset); err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(dev.Written, tc.wantWritten, bytes.Equal) {
				t.Errorf("wrote %d packets, want %d", len(dev.Written), len(tc.wantWritten))
			}
			if got := f.Stats.DeniedOut.Load(); tc.policy && (tc.filterSends && !SendsUnfiltered) != (got == 1) {
				t.Errorf("%d outbound packets counted denied", got)
			}
		})
	}
}

// A batch the policy denies whole never reaches the device.
func TestTUNWriteAllDenied(t *testing.T) {
	f, _ := newFilter(t, officePolicy(1), Options{})
	dev := &tuntest.Batch{}
	n, err := NewTUN(dev, f, true).Write(withHeadroom(tcp(office4, home4, 40000, 22, syn)), offset)
	if n != 0 || err != nil || len(dev.Written) != 0 {
		t.Errorf("Write = %d, %v with %d written; want nothing", n, err, len(dev.Written))
	}
}
