package portmap

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestDiscoverIGD(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
		"USN: uuid:0::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://127.0.0.1:1/igd.xml\r\n\r\n"
	tests := []struct {
		name    string
		answer  string // "" stays silent
		wantErr error
	}{
		{name: "IGD answers", answer: ok},
		{name: "not HTTP", answer: "hello", wantErr: ErrNoAnswer},
		{name: "error status", answer: "HTTP/1.1 404 Not Found\r\n\r\n", wantErr: ErrNoAnswer},
		{name: "silent", wantErr: ErrNoAnswer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newFakeServer(t, func([]byte) []byte {
				if tc.answer == "" {
					return nil
				}
				return []byte(tc.answer)
			})
			timeout := answerTimeout
			if errors.Is(tc.wantErr, ErrNoAnswer) {
				timeout = silenceTimeout
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			got, err := discoverIGD(ctx, srv.addr(), testRTO)
			checkErr(t, err, tc.wantErr, "")
			if tc.wantErr == nil && got != srv.addr() {
				t.Errorf("IGD at %v, want %v", got, srv.addr())
			}
			want := fmt.Sprintf("M-SEARCH * HTTP/1.1\r\nHOST: %s\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"+
				"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n", srv.addr())
			reqs := srv.requests()
			if len(reqs) == 0 {
				t.Fatal("no M-SEARCH received")
			}
			if string(reqs[0]) != want {
				t.Errorf("M-SEARCH:\n%q\nwant\n%q", reqs[0], want)
			}
		})
	}
}
