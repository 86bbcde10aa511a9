package plain

import (
	"math"
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"count", Count(4500), "4,500"},
		{"count rounds", Count(919.6), "920"},
		{"count small", Count(38), "38"},
		{"count NaN", Count(math.NaN()), "-"},
		{"number noise", Number(0.0023110000000000001), "0.00231"},
		{"number tiny", Number(2.74e-18), "2.74e-18"},
		{"number", Number(147.5), "148"},
		{"number decimals", Number(4.1), "4.1"},
		{"number thousands", Number(12345.6), "12,346"},
		{"number zero", Number(0), "0"},
		{"percent", Percent(0.041), "4.1%"},
		{"percent small", Percent(0.0023), "0.23%"},
		{"percent under one", Percent(0.009), "0.9%"},
		{"percent large", Percent(0.125), "12.5%"},
		{"percent whole", Percent(1), "100%"},
		{"percent zero", Percent(0), "0%"},
		{"percent vanishing", Percent(1e-9), "<0.0001%"},
		{"change", Change(0.5), "+50%"},
		{"change big", Change(11), "+1,100%"},
		{"change small", Change(0.052), "+5.2%"},
		{"change negative", Change(-0.12), "-12%"},
		{"latency ms", Seconds(0.0381), "38.1 ms"},
		{"latency µs", Seconds(0.00085), "850 µs"},
		{"latency s", Seconds(1.25), "1.25 s"},
		{"seconds long", Seconds(125), "2 min 5 s"},
		{"duration s", Duration(45 * time.Second), "45 s"},
		{"duration min s", Duration(543 * time.Second), "9 min 3 s"},
		{"duration long min", Duration(25*time.Minute + 10*time.Second), "25 min"},
		{"duration h", Duration(2*time.Hour + 5*time.Minute), "2 h 5 min"},
		{"duration days", Duration(72 * time.Hour), "3 days"},
		{"rate", Rate(5.1, "req"), "5.1 req/s"},
		{"ago", Ago(time.Unix(1000, 0), time.Unix(1012, 0)), "12 s ago"},
		{"ago old", Ago(time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)), "2026-01-02 03:04 UTC"},
		{"plural one", Plural(1, "request"), "1 request"},
		{"plural many", Plural(4500, "request"), "4,500 requests"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
