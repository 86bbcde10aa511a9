package otlp

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigilhq/vigil/collector"
)

const (
	contentTypeProto = "application/x-protobuf"
	contentTypeJSON  = "application/json"
)

// HTTPHandler serves OTLP/HTTP for the three signals under prefix (e.g.
// "/v1" on the OTLP port, "/otlp/v1" on Vigil's main port).
func (r *Receiver) HTTPHandler(prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(prefix+"/metrics", r.serveMetrics)
	mux.HandleFunc(prefix+"/traces", r.serveTraces)
	mux.HandleFunc(prefix+"/logs", r.serveLogs)
	curried := prometheus.Labels{"receiver": ReceiverName}
	var h http.Handler = mux
	h = promhttp.InstrumentHandlerCounter(r.metrics.Requests.MustCurryWith(curried), h)
	h = promhttp.InstrumentHandlerDuration(r.metrics.RequestDuration.MustCurryWith(curried), h)
	return promhttp.InstrumentHandlerInFlight(r.metrics.InFlight.WithLabelValues(ReceiverName), h)
}

// request reads an OTLP/HTTP body, takes a processing slot, decompresses
// the body and checks its nesting, answering any error itself. release
// frees the body and the slot.
func (r *Receiver) request(w http.ResponseWriter, req *http.Request, signal collector.OTLPSignal) (body []byte, json bool, release func(), ok bool) {
	release = func() {}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeStatus(w, false, http.StatusMethodNotAllowed, codes.InvalidArgument, fmt.Sprintf("%s is not allowed: OTLP/HTTP takes POST", req.Method))
		return nil, false, release, false
	}
	ct, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	switch {
	case err == nil && ct == contentTypeProto:
	case err == nil && ct == contentTypeJSON:
		json = true
	default:
		writeStatus(w, false, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Type %q: use %s or %s", req.Header.Get("Content-Type"), contentTypeProto, contentTypeJSON))
		return nil, false, release, false
	}
	fail := func(err error) {
		r.metrics.Refused(w, ReceiverName, err)
		code := collector.StatusCode(err)
		writeStatus(w, json, code, rpcCode(code), err.Error())
	}
	wire := collector.GetBuffer()
	admitted, err := r.limiter.ReadAndAdmit(w, req, ReceiverName, int64(r.cfg.HTTP.MaxRequestBytes), wire)
	if err != nil {
		collector.PutBuffer(wire)
		fail(err)
		return nil, json, release, false
	}
	r.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "wire").Add(float64(len(wire.B)))
	held := wire
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		plain := collector.GetBuffer()
		err := collector.DecodeGzip(plain, wire.B, int64(r.cfg.HTTP.MaxDecompressedBytes))
		collector.PutBuffer(wire)
		held = plain
		if err != nil {
			collector.PutBuffer(plain)
			admitted()
			fail(err)
			return nil, json, release, false
		}
		r.metrics.ReceivedBytes.WithLabelValues(ReceiverName, "decompressed").Add(float64(len(plain.B)))
	default:
		collector.PutBuffer(wire)
		admitted()
		writeStatus(w, json, http.StatusUnsupportedMediaType, codes.InvalidArgument, fmt.Sprintf("unsupported Content-Encoding %q: use gzip or none", enc))
		return nil, json, release, false
	}
	if err := checkDepth(held.B, json, signal); err != nil {
		collector.PutBuffer(held)
		admitted()
		fail(err)
		return nil, json, release, false
	}
	return held.B, json, func() { collector.PutBuffer(held); admitted() }, true
}

// rpcCode is the google.rpc.Status code of an HTTP refusal.
func rpcCode(httpCode int) codes.Code {
	switch httpCode {
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusRequestTimeout:
		return codes.DeadlineExceeded
	}
	return codes.InvalidArgument
}

// checkDepth refuses, before any decoder sees it, a body whose values nest
// deeper than the decoders and the walks over values can take.
func checkDepth(body []byte, json bool, signal collector.OTLPSignal) error {
	var err error
	if json {
		err = collector.CheckOTLPJSONDepth(body)
	} else {
		err = collector.CheckOTLPProtoDepth(body, signal)
	}
	if err != nil {
		return &collector.StatusError{Code: http.StatusBadRequest, Reason: collector.RefusedTooDeep, Err: fmt.Errorf("refused before decoding: %w", err)}
	}
	return nil
}

func (r *Receiver) serveMetrics(w http.ResponseWriter, req *http.Request) {
	body, json, release, ok := r.request(w, req, collector.OTLPMetrics)
	if !ok {
		return
	}
	defer release()
	er := pmetricotlp.NewExportRequest()
	if err := unmarshal(json, body, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
		writeStatus(w, json, http.StatusBadRequest, codes.InvalidArgument, "decode OTLP metrics: "+err.Error())
		return
	}
	res, err := r.consumeMetrics(req.Context(), er.Metrics())
	if err != nil {
		r.fail(w, json, err)
		return
	}
	resp := pmetricotlp.NewExportResponse()
	if res.rejected > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(res.rejected)
		resp.PartialSuccess().SetErrorMessage(res.message)
	}
	writeResponse(w, json, resp.MarshalJSON, resp.MarshalProto)
}

func (r *Receiver) serveTraces(w http.ResponseWriter, req *http.Request) {
	body, json, release, ok := r.request(w, req, collector.OTLPTraces)
	if !ok {
		return
	}
	defer release()
	er := ptraceotlp.NewExportRequest()
	if err := unmarshal(json, body, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
		writeStatus(w, json, http.StatusBadRequest, codes.InvalidArgument, "decode OTLP traces: "+err.Error())
		return
	}
	if _, err := r.consumeTraces(req.Context(), er.Traces()); err != nil {
		r.fail(w, json, err)
		return
	}
	resp := ptraceotlp.NewExportResponse()
	writeResponse(w, json, resp.MarshalJSON, resp.MarshalProto)
}

func (r *Receiver) serveLogs(w http.ResponseWriter, req *http.Request) {
	body, json, release, ok := r.request(w, req, collector.OTLPLogs)
	if !ok {
		return
	}
	defer release()
	er := plogotlp.NewExportRequest()
	if err := unmarshal(json, body, er.UnmarshalJSON, er.UnmarshalProto); err != nil {
		writeStatus(w, json, http.StatusBadRequest, codes.InvalidArgument, "decode OTLP logs: "+err.Error())
		return
	}
	if _, err := r.consumeLogs(req.Context(), er.Logs()); err != nil {
		r.fail(w, json, err)
		return
	}
	resp := plogotlp.NewExportResponse()
	writeResponse(w, json, resp.MarshalJSON, resp.MarshalProto)
}

func unmarshal(json bool, body []byte, fromJSON, fromProto func([]byte) error) error {
	if json {
		return fromJSON(body)
	}
	return fromProto(body)
}

// fail answers a consumer failure: retryable (503 with Retry-After) when
// storage is unavailable, 500 otherwise.
func (r *Receiver) fail(w http.ResponseWriter, json bool, err error) {
	r.logger.Warn("OTLP request failed", "err", err)
	if errors.Is(err, errUnavailable) {
		w.Header().Set("Retry-After", "5")
		writeStatus(w, json, http.StatusServiceUnavailable, codes.Unavailable, err.Error())
		return
	}
	writeStatus(w, json, http.StatusInternalServerError, codes.Internal, err.Error())
}

func writeResponse(w http.ResponseWriter, json bool, toJSON, toProto func() ([]byte, error)) {
	var (
		b   []byte
		err error
		ct  = contentTypeProto
	)
	if json {
		b, err = toJSON()
		ct = contentTypeJSON
	} else {
		b, err = toProto()
	}
	if err != nil {
		http.Error(w, "encode OTLP response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeStatus answers an error with a google.rpc.Status body in the
// request's encoding, as the OTLP/HTTP specification asks.
func writeStatus(w http.ResponseWriter, json bool, httpCode int, code codes.Code, msg string) {
	st := &spb.Status{Code: int32(code), Message: msg}
	var (
		b   []byte
		err error
		ct  = contentTypeProto
	)
	if json {
		b, err = protojson.Marshal(st)
		ct = contentTypeJSON
	} else {
		b, err = proto.Marshal(st)
	}
	if err != nil {
		http.Error(w, msg, httpCode)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(httpCode)
	_, _ = w.Write(b)
}
