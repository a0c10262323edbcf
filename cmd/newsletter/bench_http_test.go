package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

// TestBenchHTTP runs a short load run of every target and checks that its counts add up and that
// it cleans up after itself; it asserts nothing about speed.
func TestBenchHTTP(t *testing.T) {
	cfg, err := LoadConfig(func(k string) string {
		if k == "NEWSLETTER_DATABASE_URL" {
			return testdb.ServerURL()
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	a := &App{cfg: cfg, stdout: &out, stderr: &errOut, log: slog.New(slog.NewTextHandler(&errOut, nil))}
	rep, err := a.benchHTTP(context.Background(), benchHTTPOptions{Duration: 2 * time.Second, Clients: 4, Targets: []string{"subscribe", "archive", "unsubscribe"}})
	if err != nil {
		t.Fatalf("bench: %v\n%s%s", err, out.String(), errOut.String())
	}
	t.Logf("\n%s", out.String())

	if got := len(rep.Results); got != 3 {
		t.Fatalf("got %d results, want 3", got)
	}
	for _, r := range rep.Results {
		t.Run(r.Target, func(t *testing.T) {
			if r.Requests == 0 {
				t.Fatal("no requests made")
			}
			answered := 0
			for _, n := range r.Status {
				answered += n
			}
			if answered+r.Transport != r.Requests {
				t.Errorf("answered %d + no answer %d != requests %d", answered, r.Transport, r.Requests)
			}
			if len(r.Latencies) != answered {
				t.Errorf("%d latencies for %d answers", len(r.Latencies), answered)
			}
			if ok := r.count(200, 300); ok != r.Requests {
				t.Errorf("%d of %d requests answered 2xx: %v, %d without answer", ok, r.Requests, r.Status, r.Transport)
			}
			if r.percentile(.5) > r.percentile(.99) || r.percentile(.99) > r.percentile(1) {
				t.Errorf("percentiles out of order: p50 %s, p99 %s, max %s", r.percentile(.5), r.percentile(.99), r.percentile(1))
			}
			if !strings.Contains(out.String(), r.Target) {
				t.Errorf("output does not name %s", r.Target)
			}
		})
	}
	if rep.failed() {
		t.Errorf("run failed: %+v\n%s", rep.Checks, errOut.String())
	}
	// One check per target that writes, plus the log check, all held.
	if got := len(rep.Checks); got != 3 {
		t.Errorf("got %d checks, want 3: %+v", got, rep.Checks)
	}
	for _, c := range rep.Checks {
		if !c.OK {
			t.Errorf("check %q failed: %s", c.Name, c.Detail)
		}
	}
	if !strings.Contains(rep.Checks[0].Detail, " of ") || strings.HasPrefix(rep.Checks[0].Detail, "0 of") {
		t.Errorf("subscribe check saw no accepted address: %s", rep.Checks[0].Detail)
	}

	admin, err := sqlx.Open("postgres", testdb.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var left int
	if err := admin.Get(&left, `SELECT count(*) FROM pg_database WHERE datname = $1`, rep.Database); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("database %s still exists after the run", rep.Database)
	}
}

// TestBenchHTTPUsage checks the command's argument rules (exit 2 on bad usage).
func TestBenchHTTPUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"UnknownTarget", []string{"--target", "admin"}},
		{"ZeroClients", []string{"--clients", "0"}},
		{"TooManyClients", []string{"--clients", "5000"}},
		{"ZeroDuration", []string{"--duration", "0s"}},
		{"EndlessDuration", []string{"--duration", "24h"}},
		{"ExtraArgument", []string{"now"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			getenv := func(k string) string {
				if k == "NEWSLETTER_DATABASE_URL" {
					return testdb.ServerURL()
				}
				return ""
			}
			if code := run(context.Background(), append([]string{"bench", "http"}, tc.args...), getenv, strings.NewReader(""), &out, &errOut); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, errOut.String())
			}
		})
	}
}
