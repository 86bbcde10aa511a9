package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/alecthomas/units"
	"github.com/klauspost/compress/snappy"
)

// Default body limits. A remote_write request from Prometheus is a few
// hundred KiB; these leave room for large batches while bounding memory.
const (
	DefaultMaxRequestBytes      = 32 << 20
	DefaultMaxDecompressedBytes = 128 << 20
)

// BodyLimits bound an HTTP receiver's request body: every receiver embeds
// them under its own config key (receivers.remote_write, receivers.loki,
// receivers.otlp.http).
type BodyLimits struct {
	// MaxRequestBytes is the largest body accepted as sent, compressed or
	// not (413 beyond).
	MaxRequestBytes units.Base2Bytes `yaml:"max_request_bytes"`
	// MaxDecompressedBytes is the largest body accepted once decompressed
	// (413 beyond).
	MaxDecompressedBytes units.Base2Bytes `yaml:"max_decompressed_bytes"`
}

// DefaultBodyLimits are the limits every receiver starts from.
func DefaultBodyLimits() BodyLimits {
	return BodyLimits{MaxRequestBytes: DefaultMaxRequestBytes, MaxDecompressedBytes: DefaultMaxDecompressedBytes}
}

// Validate reports a limit that cannot work.
func (b BodyLimits) Validate() error {
	switch {
	case b.MaxRequestBytes <= 0:
		return fmt.Errorf("max_request_bytes must be positive, got %s", b.MaxRequestBytes)
	case b.MaxDecompressedBytes <= 0:
		return fmt.Errorf("max_decompressed_bytes must be positive, got %s", b.MaxDecompressedBytes)
	}
	return nil
}

// StatusError is an error that carries the HTTP status code a receiver
// should answer with.
type StatusError struct {
	Code int
	Err  error
	// Reason, when set, counts the refused request in
	// vigil_ingest_refused_requests_total.
	Reason string
	// RetryAfter, when positive, is sent as the Retry-After header (seconds).
	RetryAfter int
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// Errorf builds a StatusError.
func Errorf(code int, format string, args ...any) error {
	return &StatusError{Code: code, Err: fmt.Errorf(format, args...)}
}

// StatusCode is the HTTP status for err: its own for a StatusError, 500 otherwise.
func StatusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return http.StatusInternalServerError
}

// Refused counts a refused request in vigil_ingest_refused_requests_total
// when err carries a reason, and sets Retry-After on w when it carries one.
// Receivers call it before writing their error answer.
func (m *Metrics) Refused(w http.ResponseWriter, receiver string, err error) {
	var se *StatusError
	if !errors.As(err, &se) {
		return
	}
	if se.Reason != "" {
		m.RefusedRequests.WithLabelValues(receiver, se.Reason).Inc()
	}
	if se.RetryAfter > 0 && w != nil {
		w.Header().Set("Retry-After", strconv.Itoa(se.RetryAfter))
	}
}

// Buffer is a reusable byte buffer for request bodies.
type Buffer struct{ B []byte }

// maxPooledBuffer keeps exceptional requests from pinning large buffers in the pool.
const maxPooledBuffer = 8 << 20

var bufPool = sync.Pool{New: func() any { return &Buffer{B: make([]byte, 0, 64<<10)} }}

// GetBuffer takes a buffer from the pool.
func GetBuffer() *Buffer { return bufPool.Get().(*Buffer) }

// PutBuffer returns b to the pool. Nothing may reference b.B afterwards.
func PutBuffer(b *Buffer) {
	if cap(b.B) > maxPooledBuffer {
		return
	}
	b.B = b.B[:0]
	bufPool.Put(b)
}

// maxPrealloc bounds what is allocated for a body before its bytes
// arrive: a sender announcing 32 MiB and trickling them holds only what it
// has sent.
const maxPrealloc = 1 << 20

// ReadBody reads the whole request body into buf, failing with 413 when it
// is larger than maxBytes (it reads at most maxBytes+1 bytes whatever the
// sender claims in Content-Length) and with 408 when it has not arrived
// within timeout (0: no limit but the server's read timeout). The deadline
// is lifted once the body is read, so that waiting for a slot and
// processing are not cut short.
func ReadBody(w http.ResponseWriter, r *http.Request, maxBytes int64, timeout time.Duration, buf *Buffer) error {
	if r.ContentLength > maxBytes {
		return &StatusError{Code: http.StatusRequestEntityTooLarge, Reason: RefusedTooLarge,
			Err: fmt.Errorf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, maxBytes)}
	}
	if n := min(r.ContentLength, maxPrealloc); n > 0 && int64(cap(buf.B)) < n {
		buf.B = make([]byte, 0, n)
	}
	var rc *http.ResponseController
	if timeout > 0 && w != nil {
		rc = http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			rc = nil // not supported by this connection: the server's read timeout applies
		}
	}
	err := readLimited(r.Body, maxBytes, buf)
	if err == nil && rc != nil {
		// Lift the deadline for the rest of the request. After a failure
		// it stays: the server's attempt to drain the rest of the body
		// fails at once, and it answers and closes the connection.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		switch {
		case errors.Is(err, errTooLarge):
			return &StatusError{Code: http.StatusRequestEntityTooLarge, Reason: RefusedTooLarge,
				Err: fmt.Errorf("request body exceeds the limit of %d bytes", maxBytes)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return &StatusError{Code: http.StatusRequestTimeout, Reason: RefusedBodyReadTimeout,
				Err: fmt.Errorf("request body not received within %s (receivers.limits.body_read_timeout): %d bytes arrived", timeout, len(buf.B))}
		}
		return Errorf(http.StatusBadRequest, "read request body: %w", err)
	}
	return nil
}

var errTooLarge = errors.New("too large")

// readLimited reads r to its end into buf, or fails with errTooLarge after maxBytes.
func readLimited(r io.Reader, maxBytes int64, buf *Buffer) error {
	b := buf.B[:0]
	lr := io.LimitReader(r, maxBytes+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			buf.B = b
			return err
		}
	}
	buf.B = b
	if int64(len(b)) > maxBytes {
		return errTooLarge
	}
	return nil
}

// DecodeSnappy decodes a snappy block-format payload into dst, failing with
// 413 when the decoded size would exceed maxBytes (checked from the header
// before anything is allocated) and 400 when the payload is corrupt.
func DecodeSnappy(dst *Buffer, src []byte, maxBytes int64) error {
	n, err := snappy.DecodedLen(src)
	if err != nil {
		return Errorf(http.StatusBadRequest, "snappy: %w", err)
	}
	if int64(n) > maxBytes {
		return &StatusError{Code: http.StatusRequestEntityTooLarge, Reason: RefusedTooLarge,
			Err: fmt.Errorf("decompressed body of %d bytes exceeds the limit of %d bytes", n, maxBytes)}
	}
	if cap(dst.B) < n {
		dst.B = make([]byte, n)
	}
	out, err := snappy.Decode(dst.B[:n], src)
	if err != nil {
		return Errorf(http.StatusBadRequest, "snappy: %w", err)
	}
	dst.B = out
	return nil
}

// DecodeGzip decompresses a gzip payload into dst, failing with 413 past
// maxBytes of output and 400 on corrupt input.
func DecodeGzip(dst *Buffer, src []byte, maxBytes int64) error {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return Errorf(http.StatusBadRequest, "gzip: %w", err)
	}
	defer zr.Close()
	if err := readLimited(zr, maxBytes, dst); err != nil {
		if errors.Is(err, errTooLarge) {
			return &StatusError{Code: http.StatusRequestEntityTooLarge, Reason: RefusedTooLarge,
				Err: fmt.Errorf("decompressed body exceeds the limit of %d bytes", maxBytes)}
		}
		return Errorf(http.StatusBadRequest, "gzip: %w", err)
	}
	return nil
}
