package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "test_things_total", Help: "Things."}
	first := Register(reg, prometheus.NewCounter(opts))
	second := Register(reg, prometheus.NewCounter(opts))
	first.Inc()
	second.Inc()
	if got := testutil.ToFloat64(first); got != 2 || first != second {
		t.Errorf("the second registration did not reuse the first: %v", got)
	}
	if c := Register(nil, prometheus.NewCounter(opts)); c == nil {
		t.Error("nil registry")
	}
	defer func() {
		if recover() == nil {
			t.Error("a gauge under a counter's name did not panic")
		}
	}()
	Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_things_total", Help: "Things."}))
}
