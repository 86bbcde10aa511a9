# Side-by-side benchmarks against real peers. The Makefile includes this
# file (`include bench/bench.mk`); it uses GO, GOBIN and the build and
# peers targets from there.

BENCH_OUT      ?= bench/results/latest.md
BENCH_FLAGS    ?=
OTELCOL_DIR    := bench/otelcol
OTELCOL_BIN    ?= $(OTELCOL_DIR)/otelcol-bench/otelcol-bench
OTELCOL_BUILDER_VERSION := v0.161.0

.PHONY: bench-peers bench-peers-quick bench-otelcol

## bench-peers: Vigil vs Prometheus 2.42 vs VictoriaMetrics 1.79 on 1M series, 3 repetitions (< 15 min) -> bench/results/latest.md
bench-peers: build peers
	$(GO) run ./bench/cmd/vigil-bench -vigil ./vigil -out $(BENCH_OUT) \
		$(if $(wildcard $(OTELCOL_BIN)),-otelcol $(OTELCOL_BIN)) $(BENCH_FLAGS)

## bench-peers-quick: the same on 100k series, one repetition (about 2 min) -> bench/results/quick.md
bench-peers-quick: build peers
	$(GO) run ./bench/cmd/vigil-bench -vigil ./vigil -out bench/results/quick.md -series 100000 -reps 1 -query-runs 3 \
		$(if $(wildcard $(OTELCOL_BIN)),-otelcol $(OTELCOL_BIN)) $(BENCH_FLAGS)

## bench-otelcol: build an OpenTelemetry Collector (otlp receiver, spanmetrics connector, prometheus exporter) with the official builder; bench-peers then compares span metrics with it
bench-otelcol:
	@[ -x "$(GOBIN)/builder" ] || GOBIN=$(GOBIN) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_BUILDER_VERSION)
	cd $(OTELCOL_DIR) && $(GOBIN)/builder --config builder.yaml
