package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// FuzzHeaderEnd: headerEnd finds where a request's line and headers end
// (the first empty line, CRLF or bare LF), across reads of any size, or
// says they do not fit the buffer; and every request it finds complete
// that net/http parses and the fast server takes is parsed the same from
// those bytes alone.
func FuzzHeaderEnd(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\n\r\nrest",
		"\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", 800) + "\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 2*fastBufferSize {
			data = data[:2*fastBufferSize] // past the buffer it is all the same: no end found
		}
		want := -1
		for i := 0; i < len(data); i++ {
			if data[i] != '\n' {
				continue
			}
			if i+1 < len(data) && data[i+1] == '\n' {
				want = i + 2
				break
			}
			if i+2 < len(data) && data[i+1] == '\r' && data[i+2] == '\n' {
				want = i + 3
				break
			}
		}
		fc := &fastConn{br: bufio.NewReaderSize(&chunkReader{data: data, n: int(chunk)%64 + 1}, fastBufferSize)}
		end, err := fc.headerEnd()
		switch {
		case want < 0 || want > fastBufferSize:
			if err == nil && end >= 0 {
				t.Fatalf("headerEnd %d, want none (err or -1)", end)
			}
			return
		case err != nil || end != want:
			t.Fatalf("headerEnd %d %v, want %d", end, err, want)
		}
		req, err := http.ReadRequest(fc.br)
		if err != nil || !fastRequest(req) {
			return
		}
		again, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:end])))
		if err != nil || again.Method != req.Method || again.RequestURI != req.RequestURI || again.Host != req.Host || len(again.Header) != len(req.Header) {
			t.Fatalf("parsed from the headers alone: %+v %v; from the stream: %+v", again, err, req)
		}
	})
}

// chunkReader returns data n bytes at a time, then io.EOF.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n, len(r.data))
	copy(p, r.data[:k])
	r.data = r.data[k:]
	return k, nil
}

var _ net.Conn = (*prefixConn)(nil)
