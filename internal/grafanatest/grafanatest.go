// Package grafanatest is an in-process stand-in for the parts of Grafana's
// HTTP API that `vigil gen dashboards --push` uses, written from Grafana's
// API documentation (developers/http_api/dashboard.md and folder.md):
//
//	GET  /api/folders            list folders (limit, page)
//	GET  /api/folders/:uid       one folder
//	POST /api/folders            create a folder {uid, title}; 409 if it exists
//	POST /api/dashboards/db      create/update {dashboard, folderUid, overwrite, message};
//	                             412 name-exists / version-mismatch without overwrite
//	GET  /api/dashboards/uid/:uid {dashboard, meta}
//
// with Bearer token or basic authentication (401 otherwise) and Grafana's
// error body {"message": ...}. A real Grafana cannot be installed from this
// machine's package registries (Debian does not package it), so the push
// client is tested against this server instead.
package grafanatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Options are the credentials the server accepts. With none set, every
// request is accepted (Grafana with anonymous admin access).
type Options struct {
	Token    string
	User     string
	Password string
}

// Folder is a stored folder.
type Folder struct {
	ID      int64  `json:"id"`
	UID     string `json:"uid"`
	Title   string `json:"title"`
	URL     string `json:"url"`
	Version int    `json:"version"`
}

// Dashboard is a stored dashboard with its metadata.
type Dashboard struct {
	ID        int64
	UID       string
	FolderUID string
	Version   int
	Message   string
	Model     map[string]any
}

// Request is one request the server handled.
type Request struct {
	Method, Path string
	Status       int
}

// Server is the fake Grafana.
type Server struct {
	*httptest.Server
	opts Options

	mu         sync.Mutex
	folders    []*Folder
	dashboards map[string]*Dashboard
	nextID     int64
	requests   []Request
}

// New starts a server; it is closed at the end of the test.
func New(t interface{ Cleanup(func()) }, opts Options) *Server {
	s := &Server{opts: opts, dashboards: map[string]*Dashboard{}, nextID: 1}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/folders", s.listFolders)
	mux.HandleFunc("GET /api/folders/{uid}", s.getFolder)
	mux.HandleFunc("POST /api/folders", s.createFolder)
	mux.HandleFunc("POST /api/dashboards/db", s.saveDashboard)
	mux.HandleFunc("GET /api/dashboards/uid/{uid}", s.getDashboard)
	s.Server = httptest.NewServer(s.authenticate(mux))
	t.Cleanup(s.Close)
	return s
}

// AddFolder stores a folder as if a user had created it.
func (s *Server) AddFolder(uid, title string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addFolder(uid, title)
}

// Folders returns the stored folders.
func (s *Server) Folders() []Folder {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Folder, len(s.folders))
	for i, f := range s.folders {
		out[i] = *f
	}
	return out
}

// Dashboard returns a stored dashboard.
func (s *Server) Dashboard(uid string) (Dashboard, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dashboards[uid]
	if !ok {
		return Dashboard{}, false
	}
	return *d, true
}

// DashboardUIDs returns the stored dashboards' uids, sorted.
func (s *Server) DashboardUIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for uid := range s.dashboards {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}

// Requests returns the requests handled so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns how many requests matched method and path.
func (s *Server) Count(method, path string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			s.mu.Lock()
			s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Status: rec.status})
			s.mu.Unlock()
		}()
		if !s.authorized(r) {
			writeJSON(rec, http.StatusUnauthorized, map[string]any{"message": "Unauthorized"})
			return
		}
		next.ServeHTTP(rec, r)
	})
}

func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" && s.opts.User == "" {
		return true
	}
	if s.opts.Token != "" && r.Header.Get("Authorization") == "Bearer "+s.opts.Token {
		return true
	}
	if s.opts.User != "" {
		u, p, ok := r.BasicAuth()
		return ok && u == s.opts.User && p == s.opts.Password
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errorJSON(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg})
}

func (s *Server) listFolders(w http.ResponseWriter, r *http.Request) {
	limit, page := 1000, 1
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errorJSON(w, http.StatusBadRequest, "invalid limit")
			return
		}
		limit = n
	}
	if v := r.URL.Query().Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errorJSON(w, http.StatusBadRequest, "invalid page")
			return
		}
		page = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	start := (page - 1) * limit
	for i := start; i < len(s.folders) && i < start+limit; i++ {
		f := s.folders[i]
		out = append(out, map[string]any{"id": f.ID, "uid": f.UID, "title": f.Title})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getFolder(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.folders {
		if f.UID == r.PathValue("uid") {
			writeJSON(w, http.StatusOK, f)
			return
		}
	}
	errorJSON(w, http.StatusNotFound, "folder not found")
}

var uidRE = regexp.MustCompile(`^[a-zA-Z0-9\-_]{1,40}$`)

func (s *Server) createFolder(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UID   string `json:"uid"`
		Title string `json:"title"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		errorJSON(w, http.StatusBadRequest, "bad request data")
		return
	}
	if strings.TrimSpace(body.Title) == "" {
		errorJSON(w, http.StatusBadRequest, "folder title cannot be empty")
		return
	}
	if body.UID != "" && !uidRE.MatchString(body.UID) {
		errorJSON(w, http.StatusBadRequest, "uid contains illegal characters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.folders {
		if f.UID == body.UID || f.Title == body.Title {
			errorJSON(w, http.StatusConflict, "a folder with the same name already exists")
			return
		}
	}
	if body.UID == "" {
		body.UID = fmt.Sprintf("f%08d", s.nextID)
	}
	writeJSON(w, http.StatusOK, s.addFolder(body.UID, body.Title))
}

func (s *Server) addFolder(uid, title string) *Folder {
	f := &Folder{ID: s.nextID, UID: uid, Title: title, URL: "/dashboards/f/" + uid + "/" + slug(title), Version: 1}
	s.nextID++
	s.folders = append(s.folders, f)
	return f
}

func (s *Server) saveDashboard(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Dashboard map[string]any `json:"dashboard"`
		FolderUID string         `json:"folderUid"`
		Overwrite bool           `json:"overwrite"`
		Message   string         `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		errorJSON(w, http.StatusBadRequest, "bad request data")
		return
	}
	if body.Dashboard == nil {
		errorJSON(w, http.StatusBadRequest, "dashboard is required")
		return
	}
	title, _ := body.Dashboard["title"].(string)
	if strings.TrimSpace(title) == "" {
		errorJSON(w, http.StatusBadRequest, "Dashboard title cannot be empty")
		return
	}
	uid, _ := body.Dashboard["uid"].(string)
	if uid != "" && !uidRE.MatchString(uid) {
		errorJSON(w, http.StatusBadRequest, "uid contains illegal characters")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if body.FolderUID != "" && !s.hasFolder(body.FolderUID) {
		errorJSON(w, http.StatusBadRequest, "folder not found")
		return
	}
	if uid == "" {
		uid = fmt.Sprintf("d%08d", s.nextID)
	}
	d, exists := s.dashboards[uid]
	if exists && !body.Overwrite {
		if v, ok := body.Dashboard["version"].(float64); ok && int(v) != d.Version {
			writeJSON(w, http.StatusPreconditionFailed, map[string]any{"status": "version-mismatch", "message": "The dashboard has been changed by someone else"})
			return
		}
		if _, ok := body.Dashboard["version"]; !ok {
			writeJSON(w, http.StatusPreconditionFailed, map[string]any{"status": "name-exists", "message": "A dashboard with the same uid already exists"})
			return
		}
	}
	if !exists {
		d = &Dashboard{ID: s.nextID, UID: uid}
		s.nextID++
		s.dashboards[uid] = d
	}
	d.Version++
	d.FolderUID = body.FolderUID
	d.Message = body.Message
	model := map[string]any{}
	for k, v := range body.Dashboard {
		model[k] = v
	}
	model["id"], model["uid"], model["version"] = d.ID, uid, d.Version
	d.Model = model
	writeJSON(w, http.StatusOK, map[string]any{
		"id": d.ID, "uid": uid, "url": "/d/" + uid + "/" + slug(title),
		"status": "success", "version": d.Version, "slug": slug(title),
	})
}

func (s *Server) hasFolder(uid string) bool {
	for _, f := range s.folders {
		if f.UID == uid {
			return true
		}
	}
	return false
}

func (s *Server) getDashboard(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dashboards[r.PathValue("uid")]
	if !ok {
		errorJSON(w, http.StatusNotFound, "Dashboard not found")
		return
	}
	title, _ := d.Model["title"].(string)
	writeJSON(w, http.StatusOK, map[string]any{
		"dashboard": d.Model,
		"meta": map[string]any{
			"url": "/d/" + d.UID + "/" + slug(title), "folderUid": d.FolderUID, "slug": slug(title), "version": d.Version,
		},
	})
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slug(s string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
