package evidence

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// maxLimit caps the records one request returns.
const maxLimit = 1000

type recordJSON struct {
	Service    string    `json:"service"`
	Version    string    `json:"version"`
	ObservedAt time.Time `json:"observedAt"`
	Collector  string    `json:"collector,omitempty"`
	Record     any       `json:"record"`
}

// Handler serves the rings as JSON in the Prometheus API envelope:
// GET ...?service=checkout&version=v2&limit=20&since=<RFC 3339 or Unix seconds>.
func (r *Rings[T]) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		limit := 20
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				writeError(w, fmt.Sprintf("invalid parameter \"limit\": %q is not a positive number", v))
				return
			}
			limit = min(n, maxLimit)
		}
		var since time.Time
		if v := q.Get("since"); v != "" {
			t, err := parseTime(v)
			if err != nil {
				writeError(w, fmt.Sprintf("invalid parameter \"since\": %v", err))
				return
			}
			since = t
		}
		recs := r.Recent(q.Get("service"), q.Get("version"), since, limit)
		out := make([]recordJSON, 0, len(recs))
		for _, rec := range recs {
			out = append(out, recordJSON{Service: rec.Key.Service, Version: rec.Key.Version, ObservedAt: rec.At.UTC(), Collector: rec.Collector, Record: rec.Item})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": out})
	})
}

func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q as RFC 3339 or Unix seconds", s)
	}
	return t, nil
}

func writeError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": "bad_data", "error": msg})
}
