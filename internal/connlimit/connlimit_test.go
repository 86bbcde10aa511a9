package connlimit

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestReserveServesOnlyProbes: beyond Max, connections are served the
// probe paths only, and a probe-only connection cannot be held open.
func TestReserveServesOnlyProbes(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(raw, Config{Max: 2, Reserve: 2, ProbeTimeout: time.Second, ProbePaths: []string{"/-/ready"}}, nil)
	srv := &http.Server{ConnContext: ConnContext, Handler: l.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))}
	go srv.Serve(l)
	defer srv.Close()
	addr := raw.Addr().String()

	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	get := func(path string) int {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/-/ready"); code != 200 {
		t.Errorf("probe beyond Max: %d, want 200", code)
	}
	if code := get("/api"); code != 503 {
		t.Errorf("API beyond Max: %d, want 503", code)
	}
	// A probe-only connection that sends nothing is closed after ProbeTimeout.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle probe-only connection: read %v, want EOF (closed by the server)", err)
	}
	for _, c := range held {
		c.Close()
	}
	// Normal slots are back.
	deadline := time.Now().Add(5 * time.Second)
	for get("/api") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("API not served again after the slow clients left")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
