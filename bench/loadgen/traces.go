package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// TracesConfig describes an OTLP traces load: pre-encoded
// ExportTraceServiceRequests that a receiver turns into span metrics.
type TracesConfig struct {
	// Requests is the number of export requests.
	Requests int
	// SpansPerRequest is the number of spans in each, spread over the services.
	SpansPerRequest int
	// Services is the number of services (resources) per request.
	Services int
	// Operations is the number of distinct span names per service.
	Operations int
	// ErrorEvery makes every n-th span an error (0: none).
	ErrorEvery int
	// End is when the spans end.
	End time.Time
}

// DefaultTracesConfig is 500 requests of 1000 spans from 10 services.
func DefaultTracesConfig() TracesConfig {
	return TracesConfig{Requests: 500, SpansPerRequest: 1000, Services: 10, Operations: 20, ErrorEvery: 50, End: time.Now()}
}

// Validate reports the first invalid field.
func (c TracesConfig) Validate() error {
	switch {
	case c.Requests < 1:
		return fmt.Errorf("requests must be at least 1, got %d", c.Requests)
	case c.Services < 1 || c.SpansPerRequest < c.Services:
		return fmt.Errorf("need at least one service and one span per service, got %d services, %d spans", c.Services, c.SpansPerRequest)
	case c.Operations < 1:
		return fmt.Errorf("operations must be at least 1, got %d", c.Operations)
	case c.ErrorEvery < 0:
		return fmt.Errorf("error_every must not be negative, got %d", c.ErrorEvery)
	case c.End.IsZero():
		return errors.New("end time is not set")
	}
	return nil
}

// TracesPayload is a built traces load.
type TracesPayload struct {
	Config TracesConfig
	// Bodies are protobuf ExportTraceServiceRequests (not compressed).
	Bodies [][]byte
	Spans  int
	Errors int
}

// BuildTraces encodes the traces load. Each request holds, per service, a
// resource with service.name, service.version and
// deployment.environment.name, and server spans of one trace per span.
func BuildTraces(c TracesConfig) (*TracesPayload, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid traces load: %w", err)
	}
	p := &TracesPayload{Config: c}
	perService := c.SpansPerRequest / c.Services
	n := 0
	for range c.Requests {
		td := ptrace.NewTraces()
		for s := range c.Services {
			rs := td.ResourceSpans().AppendEmpty()
			attrs := rs.Resource().Attributes()
			attrs.PutStr("service.name", "svc-"+strconv.Itoa(s))
			attrs.PutStr("service.version", "v1")
			attrs.PutStr("deployment.environment.name", "prod")
			spans := rs.ScopeSpans().AppendEmpty().Spans()
			spans.EnsureCapacity(perService)
			for range perService {
				n++
				sp := spans.AppendEmpty()
				var tid [16]byte
				var sid [8]byte
				binary.BigEndian.PutUint64(tid[8:], uint64(n))
				binary.BigEndian.PutUint64(sid[:], uint64(n))
				sp.SetTraceID(pcommon.TraceID(tid))
				sp.SetSpanID(pcommon.SpanID(sid))
				sp.SetName("GET /api/op-" + strconv.Itoa(n%c.Operations))
				sp.SetKind(ptrace.SpanKindServer)
				d := time.Duration(1+n%200) * time.Millisecond
				sp.SetStartTimestamp(pcommon.NewTimestampFromTime(c.End.Add(-d)))
				sp.SetEndTimestamp(pcommon.NewTimestampFromTime(c.End))
				sp.Attributes().PutStr("http.request.method", "GET")
				if c.ErrorEvery > 0 && n%c.ErrorEvery == 0 {
					sp.Status().SetCode(ptrace.StatusCodeError)
					sp.Status().SetMessage("upstream timed out")
					p.Errors++
				}
				p.Spans++
			}
		}
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			return nil, fmt.Errorf("marshal traces: %w", err)
		}
		p.Bodies = append(p.Bodies, body)
	}
	return p, nil
}

// OTLPHeaders are the headers of an OTLP/HTTP protobuf export.
func OTLPHeaders() http.Header {
	return http.Header{"Content-Type": {"application/x-protobuf"}}
}
