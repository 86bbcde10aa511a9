package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/snappy"
)

// Default body limits. A remote_write request from Prometheus is a few
// hundred KiB; these leave room for large batches while bounding memory.
const (
	DefaultMaxRequestBytes      = 32 << 20
	DefaultMaxDecompressedBytes = 128 << 20
)

// StatusError is an error that carries the HTTP status code a receiver
// should answer with.
type StatusError struct {
	Code int
	Err  error
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

// ReadBody reads the whole request body into buf, failing with 413 when it is
// larger than maxBytes. It reads at most maxBytes+1 bytes whatever the sender
// claims in Content-Length.
func ReadBody(r *http.Request, maxBytes int64, buf *Buffer) error {
	if r.ContentLength > maxBytes {
		return Errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, maxBytes)
	}
	if r.ContentLength > 0 && int64(cap(buf.B)) < r.ContentLength {
		buf.B = make([]byte, 0, r.ContentLength)
	}
	if err := readLimited(r.Body, maxBytes, buf); err != nil {
		if errors.Is(err, errTooLarge) {
			return Errorf(http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes", maxBytes)
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
		return Errorf(http.StatusRequestEntityTooLarge, "decompressed body of %d bytes exceeds the limit of %d bytes", n, maxBytes)
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
			return Errorf(http.StatusRequestEntityTooLarge, "decompressed body exceeds the limit of %d bytes", maxBytes)
		}
		return Errorf(http.StatusBadRequest, "gzip: %w", err)
	}
	return nil
}

// ErrSeriesLimit is returned for a sample of a new series when storage
// already holds the configured maximum number of series.
var ErrSeriesLimit = errors.New("series limit reached: a new series was refused")
