package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// serve runs the web server and the background workers until ctx ends, then drains them.
func (a *App) serve(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usageError{"serve takes no arguments"}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	handler, workers, err := a.build(ctx)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}

	// Workers get their own context so the HTTP server can stop first and they can finish what is in
	// flight after it.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorkers()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				a.log.Error("worker stopped", "worker", w.name, "err", err)
			}
		}()
	}

	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	a.log.Info("serving", "addr", "http://"+ln.Addr().String(), "base_url", a.cfg.BaseURL)
	if a.ready != nil {
		a.ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-httpErr:
		stopWorkers()
		wg.Wait()
		return fmt.Errorf("http server: %w", err)
	}
	a.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	stopWorkers()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		a.log.Warn("workers still busy after 30s; exiting")
	}
	return nil
}

// worker is a background loop of serve; run returns when ctx ends, after finishing work in flight.
type worker struct {
	name string
	run  func(ctx context.Context) error
}
