package grafanatest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// TestDocumentedBehaviour checks the stand-in answers as Grafana's API
// documentation says Grafana does.
func TestDocumentedBehaviour(t *testing.T) {
	s := New(t, Options{Token: "tok"})
	steps := []struct {
		name, method, path, body string
		token                    string
		status                   int
		want                     map[string]any
	}{
		{"no token", "GET", "/api/folders", "", "", 401, map[string]any{"message": "Unauthorized"}},
		{"empty folder list", "GET", "/api/folders", "", "tok", 200, nil},
		{"create folder", "POST", "/api/folders", `{"uid":"prod","title":"production"}`, "tok", 200, map[string]any{"uid": "prod", "title": "production", "url": "/dashboards/f/prod/production"}},
		{"same title again", "POST", "/api/folders", `{"uid":"prod2","title":"production"}`, "tok", 409, nil},
		{"folder without title", "POST", "/api/folders", `{"uid":"x"}`, "tok", 400, nil},
		{"get folder", "GET", "/api/folders/prod", "", "tok", 200, map[string]any{"title": "production"}},
		{"unknown folder", "GET", "/api/folders/nope", "", "tok", 404, nil},
		{"create dashboard", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d1","title":"Production Overview"},"folderUid":"prod","overwrite":false}`, "tok", 200,
			map[string]any{"uid": "d1", "status": "success", "version": float64(1), "url": "/d/d1/production-overview", "slug": "production-overview"}},
		{"same uid without overwrite", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d1","title":"Production Overview"},"overwrite":false}`, "tok", 412, map[string]any{"status": "name-exists"}},
		{"stale version", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d1","title":"Production Overview","version":7},"overwrite":false}`, "tok", 412, map[string]any{"status": "version-mismatch"}},
		{"overwrite", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d1","title":"Production Overview"},"folderUid":"prod","overwrite":true}`, "tok", 200, map[string]any{"version": float64(2)}},
		{"unknown folder uid", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d2","title":"x"},"folderUid":"nope"}`, "tok", 400, nil},
		{"no title", "POST", "/api/dashboards/db", `{"dashboard":{"uid":"d3"}}`, "tok", 400, map[string]any{"message": "Dashboard title cannot be empty"}},
		{"get dashboard", "GET", "/api/dashboards/uid/d1", "", "tok", 200, nil},
		{"unknown dashboard", "GET", "/api/dashboards/uid/nope", "", "tok", 404, nil},
	}
	for _, st := range steps {
		req, err := http.NewRequest(st.method, s.URL+st.path, bytes.NewBufferString(st.body))
		if err != nil {
			t.Fatal(err)
		}
		if st.token != "" {
			req.Header.Set("Authorization", "Bearer "+st.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.status {
			t.Errorf("%s: status %d, want %d: %s", st.name, resp.StatusCode, st.status, b)
			continue
		}
		if st.want == nil {
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Errorf("%s: %v: %s", st.name, err, b)
			continue
		}
		for k, v := range st.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", st.name, k, got[k], v)
			}
		}
	}
	if d, ok := s.Dashboard("d1"); !ok || d.Version != 2 || d.FolderUID != "prod" {
		t.Errorf("stored dashboard %+v", d)
	}
}

func TestBasicAuth(t *testing.T) {
	s := New(t, Options{User: "admin", Password: "pw"})
	for _, tc := range []struct {
		user, pw string
		status   int
	}{{"admin", "pw", 200}, {"admin", "no", 401}, {"", "", 401}} {
		req, _ := http.NewRequest("GET", s.URL+"/api/folders", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s/%s: %d, want %d", tc.user, tc.pw, resp.StatusCode, tc.status)
		}
	}
}
