package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/internal/semconv"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// writeCalls stores cumulative server-span counters for a version every 5 s
// between from and to, with errRatio of them errors.
func writeCalls(t *testing.T, st *storage.Storage, service, version string, from, to time.Time, perFlush int, errRatio float64) {
	t.Helper()
	app := st.AppenderV2(context.Background())
	base := []string{semconv.LabelService, service, semconv.LabelEnvironment, "production", semconv.LabelVersion, version,
		semconv.LabelSpanKind, semconv.KindServer, semconv.LabelSpanName, "POST /orders"}
	ok := labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, "STATUS_CODE_UNSET"}, base...)...)
	bad := labels.FromStrings(append([]string{model.MetricNameLabel, semconv.SpanCalls, semconv.LabelStatusCode, semconv.StatusError}, base...)...)
	var nOK, nBad float64
	for ts := from; !ts.After(to); ts = ts.Add(5 * time.Second) {
		e := float64(perFlush) * errRatio
		nBad += e
		nOK += float64(perFlush) - e
		for _, s := range []struct {
			ls labels.Labels
			v  float64
		}{{ok, nOK}, {bad, nBad}} {
			if _, err := app.Append(0, s.ls, 0, ts.UnixMilli(), s.v, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAutomaticRollback: a service whose catalog entry says rollback is
// automatic gets its webhook called on a rollback verdict, once, with the
// action recorded on the deployment — while the background loop runs.
func TestAutomaticRollback(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, string(b))
		mu.Unlock()
	}))
	defer hookSrv.Close()
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yml")
	_ = os.WriteFile(cat, []byte(`
defaults: {environment: production}
services:
  - name: checkout
    rollback:
      automatic: true
      webhook: {url: "`+hookSrv.URL+`"}
  - name: cart
    rollback:
      webhook: {url: "`+hookSrv.URL+`"}
`), 0o644)

	scfg := storage.DefaultConfig()
	scfg.Path = filepath.Join(dir, "data")
	st, err := storage.Open(scfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	deployAt := now.Add(-4 * time.Minute)
	for _, svc := range []string{"checkout", "cart"} {
		writeCalls(t, st, svc, "v1", deployAt.Add(-5*time.Minute), now, 100, 0.01)
		writeCalls(t, st, svc, "v2", deployAt, now, 100, 0.30)
	}
	eng, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Catalog = cat
	cfg.Window.Set("2m")
	cfg.Step.Set("5s")
	cfg.RateWindow.Set("10s")
	h, err := New(Options{Config: cfg, Dir: scfg.Path, Out: memstore.New(), Querier: PromQL{Engine: eng, Queryable: st}, Actors: []Actor{WebhookActor{}}, AllowActions: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { h.Run(ctx) })
	defer wg.Wait()
	defer cancel()
	mux := auth.NewMux(nil, nil)
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, svc := range []string{"checkout", "cart"} {
		r := call(t, "POST", srv.URL+"/api/v1/deployments", `{"service":"`+svc+`","environment":"production","version":"v2","previousVersion":"v1","startedAt":"`+deployAt.UTC().Format(time.RFC3339Nano)+`"}`)
		if r.code != 201 {
			t.Fatalf("record: %d %s", r.code, r.Error)
		}
		r = call(t, "POST", srv.URL+"/api/v1/verify", `{"service":"`+svc+`","version":"v2"}`)
		var st VerifyStatus
		_ = json.Unmarshal(r.Data, &st)
		if st.Phase != "rollback" {
			t.Fatalf("%s: phase %q, verdict %+v", svc, st.Phase, st.Verdict)
		}
		// Polling again does not act twice.
		call(t, "GET", srv.URL+"/api/v1/verify/"+st.ID, "")
	}
	h.acting.Wait() // actions run behind the verdict
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || !strings.Contains(calls[0], `"service":"checkout"`) || !strings.Contains(calls[0], `"failingSignals":["error_ratio"`) {
		t.Fatalf("webhook calls = %q, want one for checkout (cart's rollback is not automatic)", calls)
	}
	d, _ := h.Store().Latest("checkout", "production")
	if len(d.Actions) != 1 || !d.Actions[0].OK || d.Actions[0].Verdict == "" {
		t.Errorf("actions recorded = %+v", d.Actions)
	}
	if c, _ := h.Store().Latest("cart", "production"); len(c.Actions) != 0 {
		t.Errorf("cart was acted on: %+v", c.Actions)
	}
}
