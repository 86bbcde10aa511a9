package evidence

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRings(t *testing.T) {
	r := New[string]("test", 2, 2, nil)
	t0 := time.Unix(1700000000, 0)
	r.Add(Key{"checkout", "v1"}, t0, "a")
	r.Add(Key{"checkout", "v1"}, t0.Add(time.Second), "b")
	r.Add(Key{"checkout", "v1"}, t0.Add(2*time.Second), "c") // overwrites "a"
	r.Add(Key{"checkout", "v2"}, t0.Add(3*time.Second), "d")
	got := r.Recent("checkout", "v1", time.Time{}, 0)
	if len(got) != 2 || got[0].Item != "c" || got[1].Item != "b" {
		t.Fatalf("v1 = %+v, want c, b (newest first, two per key)", got)
	}
	if got := r.Recent("checkout", "", t0.Add(2*time.Second), 0); len(got) != 2 || got[0].Item != "d" {
		t.Fatalf("since filter = %+v", got)
	}
	// v2 is the most recently added to; a third key evicts v1.
	r.Add(Key{"cart", "v9"}, t0.Add(4*time.Second), "e")
	if r.Len() != 2 || len(r.Recent("checkout", "v1", time.Time{}, 0)) != 0 {
		t.Fatalf("least recently added key not evicted: len %d", r.Len())
	}
	if got := r.Recent("", "", time.Time{}, 1); len(got) != 1 || got[0].Item != "e" {
		t.Fatalf("limit 1 = %+v", got)
	}
}

func TestHandler(t *testing.T) {
	r := New[map[string]string]("test", 5, 5, nil)
	r.Add(Key{"checkout", "v2"}, time.Unix(1700000000, 0), map[string]string{"body": "payment failed"})
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		query string
		code  int
		n     int
	}{
		{"?service=checkout&version=v2", 200, 1},
		{"?service=cart", 200, 0},
		{"?since=1700000001", 200, 0},
		{"?since=2023-11-14T22:13:20Z", 200, 1},
		{"?limit=0", 400, 0},
		{"?since=yesterday", 400, 0},
	} {
		resp, err := http.Get(srv.URL + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Status string            `json:"status"`
			Data   []json.RawMessage `json:"data"`
			Error  string            `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || len(body.Data) != tc.n {
			t.Errorf("%s: status %d with %d records (%s), want %d with %d", tc.query, resp.StatusCode, len(body.Data), body.Error, tc.code, tc.n)
		}
		if tc.code == 400 && body.Error == "" {
			t.Errorf("%s: no error message", tc.query)
		}
	}
}
