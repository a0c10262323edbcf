// Package metrics registers the service's Prometheus collectors, one way for every package.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register adds c to reg and returns it. When reg already holds the same metric (same name, kind
// and labels: a second store, sender or handler on one registry, as in tests and the benchmarks)
// it returns that one, so both count into it. Another metric under the same name is a programming
// error and panics. A nil reg keeps c unregistered.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("metrics: " + err.Error())
}
