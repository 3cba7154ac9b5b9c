package coordinator

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffers of a hijacked stream connection. net/http hands a hijacked
// connection over with its own 4 KiB reader and 4 KiB writer, and the
// WebSocket library keeps both for the connection's life: at 10,000
// streams that is 80 MB of buffers that mostly sit empty (bench/RESULTS.md,
// issue 14). What passes through them is small: a node sends pings and
// reports of a few hundred bytes, and a bufio.Reader reads a larger
// message straight into the caller's slice; the coordinator's messages go
// out as one frame each, so a message longer than the writer's buffer costs
// one more write to TLS, which cuts it into records (at most 16 KiB,
// RFC 8446 §5.1) either way.
const (
	streamReadBuffer  = 512
	streamWriteBuffer = 1024
)

// smallBuffers is a ResponseWriter whose Hijack returns the connection
// with buffers of streamReadBuffer and streamWriteBuffer bytes instead of
// net/http's. The handler must return after the hijack for net/http's own
// buffers to be freed: its connection keeps them while the handler runs.
type smallBuffers struct{ http.ResponseWriter }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w smallBuffers) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker. Bytes the client sent after its request
// (net/http may have read them already) are read first.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http flushed its response (the 101) before handing over; flush
	// anyway, so nothing it buffered can be lost with its writer.
	if err := brw.Writer.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	var r io.Reader = c
	if n := brw.Reader.Buffered(); n > 0 {
		early, err := brw.Reader.Peek(n)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		r = io.MultiReader(bytes.NewReader(bytes.Clone(early)), c)
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(r, streamReadBuffer), bufio.NewWriterSize(c, streamWriteBuffer)), nil
}
