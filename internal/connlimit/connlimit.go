// Package connlimit bounds the connections an HTTP server holds, like
// golang.org/x/net/netutil.LimitListener, but keeps a reserve for the
// health probes: when the limit is reached, up to Reserve more connections
// are accepted as "probe only". On those, /-/healthy and /-/ready are
// served and everything else is answered 503 at once, and the connection
// must deliver its request within ProbeTimeout. So a Vigil whose
// connections are all taken (by a flood or by slow clients) still answers
// the kubelet, which then does not restart a healthy process.
package connlimit

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config bounds the connections.
type Config struct {
	// Max is the number of connections served normally; 0: no limit.
	Max int
	// Reserve is how many more connections are accepted for probes only.
	Reserve int
	// ProbeTimeout is the longest a probe-only connection stays open.
	ProbeTimeout time.Duration
	// ProbePaths are the paths served on probe-only connections.
	ProbePaths []string
}

// Listener is a net.Listener with the limit.
type Listener struct {
	net.Listener
	cfg      Config
	normal   chan struct{} // a slot per normal connection
	reserve  chan struct{} // a slot per probe-only connection
	closeMu  sync.Once
	done     chan struct{}
	overflow prometheus.Counter
}

// Listen wraps ln. reg, when not nil, gets vigil_http_probe_only_connections_total.
func Listen(ln net.Listener, cfg Config, reg prometheus.Registerer) *Listener {
	l := &Listener{Listener: ln, cfg: cfg, done: make(chan struct{}),
		overflow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_http_probe_only_connections_total",
			Help: "Connections accepted beyond web.max_connections, on which only /-/healthy and /-/ready are served.",
		})}
	if reg != nil {
		reg.MustRegister(l.overflow)
	}
	if cfg.Max > 0 {
		l.normal = make(chan struct{}, cfg.Max)
		l.reserve = make(chan struct{}, max(cfg.Reserve, 0))
	}
	return l
}

// Accept waits for a connection. Beyond Max+Reserve it waits for one to close.
func (l *Listener) Accept() (net.Conn, error) {
	if l.normal == nil {
		return l.Listener.Accept()
	}
	var slot chan struct{}
	select {
	case l.normal <- struct{}{}:
		slot = l.normal
	default:
		select {
		case l.normal <- struct{}{}:
			slot = l.normal
		case l.reserve <- struct{}{}:
			slot = l.reserve
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-slot
		return nil, err
	}
	lc := &conn{Conn: c, release: func() { <-slot }}
	if slot == l.reserve {
		l.overflow.Inc()
		lc.probeOnly = true
		lc.deadline = time.Now().Add(l.cfg.ProbeTimeout)
		_ = c.SetDeadline(lc.deadline)
	}
	return lc, nil
}

// Close closes the listener.
func (l *Listener) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type conn struct {
	net.Conn
	probeOnly bool
	deadline  time.Time // probe-only connections never get a later deadline
	once      sync.Once
	release   func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *conn) clamp(t time.Time) time.Time {
	if c.probeOnly && (t.IsZero() || t.After(c.deadline)) {
		return c.deadline
	}
	return t
}

func (c *conn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *conn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

type probeOnlyKey struct{}

// ConnContext is the http.Server's ConnContext: it marks the requests of
// probe-only connections (c may be the TLS connection around ours).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	for {
		switch v := c.(type) {
		case *conn:
			if v.probeOnly {
				return context.WithValue(ctx, probeOnlyKey{}, true)
			}
			return ctx
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return ctx
		}
	}
}

// Guard serves only the probe paths on probe-only connections and answers
// 503 (closing the connection) to everything else on them.
func (l *Listener) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if only, _ := r.Context().Value(probeOnlyKey{}).(bool); only {
			w.Header().Set("Connection", "close")
			for _, p := range l.cfg.ProbePaths {
				if r.URL.Path == p {
					next.ServeHTTP(w, r)
					return
				}
			}
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Service Unavailable: web.max_connections reached; only /-/healthy and /-/ready are served on this connection.", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
