package dashboards

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeResponse: whatever Grafana (or a proxy in front of it) answers,
// decoding never panics, a non-2xx status is always a *GrafanaError with
// that status, and a 2xx body that is not the expected JSON is an error
// naming the request.
func FuzzDecodeResponse(f *testing.F) {
	f.Add(200, []byte(`{"id":1,"uid":"vigil-self","url":"/d/vigil-self/vigil-self-monitoring","status":"success","version":2,"slug":"vigil-self-monitoring"}`))
	f.Add(412, []byte(`{"message":"The dashboard has been changed by someone else","status":"version-mismatch"}`))
	f.Add(401, []byte(`{"message":"Unauthorized"}`))
	f.Add(502, []byte("<html>Bad Gateway</html>"))
	f.Add(200, []byte(`[{"id":1,"uid":"nErXDvCkzz","title":"Department ABC"}]`))
	f.Add(404, []byte{})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		var out struct {
			UID     string `json:"uid"`
			Version int    `json:"version"`
		}
		err := decodeResponse(http.MethodPost, "/api/dashboards/db?x=1", status, body, &out)
		if status/100 != 2 {
			var ge *GrafanaError
			if !errors.As(err, &ge) || ge.StatusCode != status || ge.Path != "/api/dashboards/db" {
				t.Fatalf("status %d: error %#v", status, err)
			}
			if len(ge.Message) > 203 && !strings.HasPrefix(string(body), "{") {
				t.Fatalf("message not truncated: %d bytes", len(ge.Message))
			}
			_ = ge.Error()
			return
		}
		if err != nil && !strings.Contains(err.Error(), "grafana POST /api/dashboards/db") {
			t.Fatalf("error does not name the request: %v", err)
		}
	})
}
