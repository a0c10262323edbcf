package main

import (
	"testing"
	"time"
)

// TestRequestLoad: busy once busyRequests are in flight together, and for 100 ms after.
func TestRequestLoad(t *testing.T) {
	var l requestLoad
	for range busyRequests - 1 {
		l.enter()
	}
	if l.busy() {
		t.Fatalf("busy with %d requests in flight, below %d", busyRequests-1, busyRequests)
	}
	l.enter()
	if !l.busy() {
		t.Fatalf("not busy with %d requests in flight", busyRequests)
	}
	for range busyRequests {
		l.leave()
	}
	if l.inflight.Load() != 0 {
		t.Fatalf("%d in flight after all left", l.inflight.Load())
	}
	l.lastBusy.Store(time.Now().Add(-101 * time.Millisecond).UnixNano())
	if l.busy() {
		t.Error("still busy 100 ms after the load ended")
	}
}
