package deploy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigilhq/vigil/internal/auth"
	"github.com/vigilhq/vigil/internal/memstore"
	"github.com/vigilhq/vigil/internal/peers/kube"
	"github.com/vigilhq/vigil/query"
	"github.com/vigilhq/vigil/storage"
)

// relay is a rollback webhook receiver that does what the payload's
// expectedCurrentVersion asks: it rolls back only when the service still
// runs that version, and answers 409 Conflict otherwise.
type relay struct {
	mu       sync.Mutex
	running  string
	payloads []WebhookPayload
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var p WebhookPayload
	if err := json.NewDecoder(req.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.payloads = append(r.payloads, p)
	if p.ExpectedCurrentVersion != r.running {
		http.Error(w, "checkout runs "+r.running, http.StatusConflict)
		return
	}
	r.running = p.RollbackTo
}

// TestRefusedRollbackIsRecorded: a rollback asked for v2 when the service
// already runs v3 — the Deployment on a real API server, and behind a
// webhook relay — changes nothing, and each refusal is recorded with the
// deployment and counted as vigil_rollback_actions_total{result="refused"}.
// When the service does run v2, the same request rolls both back.
func TestRefusedRollbackIsRecorded(t *testing.T) {
	c := kube.Shared(t)
	cs := c.Client(t)
	for _, tc := range []struct {
		name     string
		releases []release
		refused  bool
	}{
		{"already runs v3", []release{ship("v1"), ship("v2"), ship("v3")}, true},
		{"runs the condemned v2", []release{ship("v1"), ship("v2")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := c.Namespace(t, nil)
			shipDeployment(t, cs, ns, tc.releases...)
			rl := &relay{running: tc.releases[len(tc.releases)-1].version}
			hookSrv := httptest.NewServer(rl)
			defer hookSrv.Close()

			dir := t.TempDir()
			write := func(name, content string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			cfg := DefaultConfig()
			cfg.Catalog = write("catalog.yml", `
services:
  - name: checkout
    namespace: `+ns+`
    environment: production
    rollback:
      kubernetes: {}
      webhook: {url: "`+hookSrv.URL+`"}
`)
			scfg := storage.DefaultConfig()
			scfg.Path = t.TempDir()
			st, err := storage.Open(scfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			eng, err := query.NewEngine(query.DefaultConfig(), "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			h, err := New(Options{Config: cfg, Dir: scfg.Path, Out: memstore.New(), Querier: PromQL{Engine: eng, Queryable: st},
				Actors: []Actor{WebhookActor{}, actor(t, c)}, Registerer: reg, AllowActions: true})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			mux := auth.NewMux(nil, nil) // authentication off: the test is every caller
			h.Register(mux)
			srv := httptest.NewServer(mux)
			defer srv.Close()

			r := call(t, "POST", srv.URL+"/api/v1/deployments", `{"service":"checkout","environment":"production","version":"v2","previousVersion":"v1"}`)
			var d Deployment
			if err := json.Unmarshal(r.Data, &d); err != nil || d.ID == "" {
				t.Fatalf("record deployment: %d %s", r.code, r.Data)
			}
			r = call(t, "POST", srv.URL+"/api/v1/deployments/"+d.ID+"/rollback", "")
			if r.code != http.StatusOK {
				t.Fatalf("rollback: %d %s", r.code, r.Error)
			}
			var recs []ActionRecord
			if err := json.Unmarshal(r.Data, &recs); err != nil {
				t.Fatal(err)
			}
			stored, _ := h.Store().Get(d.ID)
			if len(recs) != 2 || len(stored.Actions) != 2 {
				t.Fatalf("answered %+v, stored %+v: want one record per action", recs, stored.Actions)
			}
			result := "success"
			if tc.refused {
				result = "refused"
			}
			for i, rec := range stored.Actions {
				if (rec.Refused == RefusedTargetVersion) != tc.refused || rec.OK == tc.refused || rec.Message != recs[i].Message || !rec.At.Equal(recs[i].At) {
					t.Errorf("%s action: %+v (answered %+v), want refused=%v", rec.Kind, rec, recs[i], tc.refused)
				}
				if tc.refused && (!strings.HasPrefix(rec.Message, "refused: ") || !strings.Contains(rec.Message, "v3")) {
					t.Errorf("%s refusal message %q: want it to say refused and what runs", rec.Kind, rec.Message)
				}
				if got := testutil.ToFloat64(h.actions.WithLabelValues(rec.Kind, result)); got != 1 {
					t.Errorf(`vigil_rollback_actions_total{kind=%q,result=%q} = %v, want 1`, rec.Kind, result, got)
				}
			}
			dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "checkout", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := image("v1")
			if tc.refused {
				want = image("v3")
			}
			if img := dep.Spec.Template.Spec.Containers[0].Image; img != want {
				t.Errorf("deployment image %s, want %s", img, want)
			}
			rl.mu.Lock()
			defer rl.mu.Unlock()
			if len(rl.payloads) != 1 || rl.payloads[0].ExpectedCurrentVersion != "v2" {
				t.Errorf("webhook payloads %+v: want one with expectedCurrentVersion v2", rl.payloads)
			}
		})
	}
}
