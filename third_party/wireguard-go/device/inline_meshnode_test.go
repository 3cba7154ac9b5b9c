package device

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// meshnode's test of the inline data path (inline.go): on either path,
// each way, every packet of a burst crosses two devices over loopback
// sockets intact and in order (one flow's batches never overtake each
// other), and the devices close cleanly.
func TestDataPathInlineAndQueued(t *testing.T) {
	for _, inline := range []bool{true, false} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			old := inlineData
			inlineData = func() bool { return inline }
			t.Cleanup(func() { inlineData = old })

			var keys [2]NoisePrivateKey
			for i := range keys {
				if _, err := rand.Read(keys[i][:]); err != nil {
					t.Fatal(err)
				}
			}
			var (
				tuns  [2]*tuntest.ChannelTUN
				devs  [2]*Device
				ports [2]int
				ips   = [2]netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")}
			)
			for i := range devs {
				tuns[i] = tuntest.NewChannelTUN()
				devs[i] = NewDevice(tuns[i].TUN(), conn.NewStdNetBind(), NewLogger(LogLevelError, fmt.Sprintf("dev%d: ", i)))
				t.Cleanup(devs[i].Close)
				if devs[i].inline != inline {
					t.Fatalf("device %d: inline %v, want %v", i, devs[i].inline, inline)
				}
				if err := devs[i].IpcSet("private_key=" + hex.EncodeToString(keys[i][:]) + "\nlisten_port=0\n"); err != nil {
					t.Fatal(err)
				}
				if err := devs[i].Up(); err != nil {
					t.Fatal(err)
				}
				dump, err := devs[i].IpcGet()
				if err != nil {
					t.Fatal(err)
				}
				for _, line := range strings.Split(dump, "\n") {
					if v, ok := strings.CutPrefix(line, "listen_port="); ok {
						ports[i], _ = strconv.Atoi(v)
					}
				}
			}
			for i := range devs {
				o := 1 - i
				pub := keys[o].publicKey()
				cfg := fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n", hex.EncodeToString(pub[:]), ports[o], ips[o])
				if err := devs[i].IpcSet(cfg); err != nil {
					t.Fatal(err)
				}
			}
			// A handshake first: packets that wait for it are staged, and
			// the oldest dropped, on either path.
			tuns[0].Outbound <- meshUDPPacket(ips[0], ips[1], -1)
			select {
			case <-tuns[1].Inbound:
			case <-time.After(20 * time.Second):
				t.Fatal("no handshake")
			}
			for _, dir := range [][2]int{{0, 1}, {1, 0}} {
				from, to := dir[0], dir[1]
				const burst = 500
				go func() {
					for n := range burst {
						tuns[from].Outbound <- meshUDPPacket(ips[from], ips[to], n)
					}
				}()
				deadline := time.After(20 * time.Second)
				for n := range burst {
					select {
					case got := <-tuns[to].Inbound:
						if want := meshUDPPacket(ips[from], ips[to], n); !bytes.Equal(got, want) {
							t.Fatalf("%d→%d: packet %d is #%d, want them in order, intact", from, to, n, binary.BigEndian.Uint32(got[28:]))
						}
					case <-deadline:
						t.Fatalf("%d→%d: %d of %d packets arrived", from, to, n, burst)
					}
				}
				// meshnode: the packet counters saw the burst (and the
				// handshake and keepalives around it).
				rx, _ := devs[to].LookupPeer(keys[from].publicKey()).Packets()
				_, tx := devs[from].LookupPeer(keys[to].publicKey()).Packets()
				if rx < burst || tx < burst {
					t.Errorf("%d→%d: %d packets counted sent, %d received; want at least %d each", from, to, tx, rx, burst)
				}
			}
		})
	}
}

// meshUDPPacket is an IPv4/UDP packet numbered n, 1000 bytes long: what
// the device routes (version, length, addresses).
func meshUDPPacket(src, dst netip.Addr, n int) []byte {
	p := make([]byte, 1000)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint32(p[28:], uint32(n))
	return p
}

// meshnode: encrypting and decrypting a batch allocates nothing (their
// nonce lives in the pooled container: on the stack it escaped to the heap
// through the AEAD interface, an allocation per batch), and what one
// encrypts the other opens.
func TestCryptoOfABatchAllocatesNothing(t *testing.T) {
	var key [chacha20poly1305.KeySize]byte
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		t.Fatal(err)
	}
	kp := &Keypair{send: aead, receive: aead}
	dev := &Device{}
	dev.tun.mtu.Store(1420)
	const batch = 8
	bufs := make([][MaxMessageSize]byte, batch)
	plain := make([][]byte, batch)
	out := &QueueOutboundElementsContainer{}
	in := &QueueInboundElementsContainer{}
	for i := range bufs {
		plain[i] = bytes.Repeat([]byte{byte(i)}, 1000)
		out.elems = append(out.elems, &QueueOutboundElement{buffer: &bufs[i], keypair: kp, nonce: uint64(i)})
		in.elems = append(in.elems, &QueueInboundElement{buffer: &bufs[i], keypair: kp})
	}
	// Each run seals the plain packets afresh, then opens them.
	seal := func() {
		for i, e := range out.elems {
			e.packet = bufs[i][MessageTransportHeaderSize : MessageTransportHeaderSize+copy(bufs[i][MessageTransportHeaderSize:], plain[i])]
		}
		out.Lock()
		dev.encryptContainer(out)
	}
	open := func() {
		for i, e := range in.elems {
			e.packet = out.elems[i].packet
		}
		in.Lock()
		dev.decryptContainer(in)
	}
	if a := testing.AllocsPerRun(10, seal); a > 0 {
		t.Errorf("encryptContainer: %.0f allocations a batch, want none", a)
	}
	if a := testing.AllocsPerRun(10, open); a > 0 {
		t.Errorf("decryptContainer: %.0f allocations a batch, want none", a)
	}
	seal()
	open()
	for i, e := range in.elems {
		// Sealed packets are padded to a multiple of PaddingMultiple.
		if want := append(plain[i], make([]byte, calculatePaddingSize(len(plain[i]), 1420))...); !bytes.Equal(e.packet, want) || e.counter != uint64(i) {
			t.Errorf("packet %d: opened %d bytes (counter %d), want what was sealed, padded", i, len(e.packet), e.counter)
		}
	}
}

// meshnode: on the inline path a socket's receive goroutine delivers the
// first packet of a new session without waiting for device.net's lock:
// closeBindLocked holds that lock while it waits for the receive
// goroutines to end, so a receive goroutine that sent the staged packets
// itself (SendBuffers takes the lock) would never end, and a rebind or a
// Close would hang.
func TestInlineReceiveDoesNotWaitForTheNetLock(t *testing.T) {
	old := inlineData
	inlineData = func() bool { return true }
	t.Cleanup(func() { inlineData = old })
	dev := NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewStdNetBind(), NewLogger(LogLevelError, ""))
	t.Cleanup(dev.Close)
	var sk NoisePrivateKey
	if _, err := rand.Read(sk[:]); err != nil {
		t.Fatal(err)
	}
	if err := dev.IpcSet("private_key=" + hex.EncodeToString(sk[:]) + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	var pk NoisePublicKey
	pk[0] = 1
	peer, err := dev.NewPeer(pk)
	if err != nil {
		t.Fatal(err)
	}
	peer.Start()
	// A packet waits for the session.
	staged := dev.GetOutboundElementsContainer()
	elem := dev.NewOutboundElement()
	elem.packet = elem.buffer[MessageTransportHeaderSize : MessageTransportHeaderSize+copy(elem.buffer[MessageTransportHeaderSize:], meshUDPPacket(netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2"), 1))]
	staged.elems = append(staged.elems, elem)
	peer.StagePackets(staged)
	// The session's first packet: its keypair is the peer's next one.
	var key [chacha20poly1305.KeySize]byte
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		t.Fatal(err)
	}
	kp := &Keypair{send: aead, receive: aead, created: time.Now()}
	peer.keypairs.next.Store(kp)
	in := dev.GetInboundElementsContainer()
	first := dev.GetInboundElement()
	first.buffer = dev.GetMessageBuffer()
	first.packet = first.buffer[MessageTransportOffsetContent : MessageTransportOffsetContent+copy(first.buffer[MessageTransportOffsetContent:], meshUDPPacket(netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.1"), 2))]
	first.keypair = kp
	in.elems = append(in.elems, first)

	dev.net.Lock() // as closeBindLocked holds it
	done := make(chan struct{})
	go func() {
		peer.rxMu.Lock()
		peer.receiveContainer(in, true)
		peer.rxMu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the receive goroutine waited for device.net's lock to send the staged packet")
	}
	dev.net.Unlock()
	<-done
	if peer.keypairs.Current() != kp {
		t.Errorf("the session's first packet did not confirm its keypair")
	}
}
