//go:build linux || darwin

package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"
)

// hostileBefore also measures each hostile body through gofeed alone, as fetches parsed before
// the shape check (slow, and over a gigabyte for the deepest bodies):
//
//	go test ./digest/feeds/ -run TestHostileFeeds -v -hostile.before
var hostileBefore = flag.Bool("hostile.before", false, "also measure the hostile feeds through gofeed without the shape check")

// hostileResult is what the child process reports of one parse.
type hostileResult struct {
	Items     int     `json:"items"`
	Err       string  `json:"err"`
	Seconds   float64 `json:"seconds"`
	PeakRSS   int64   `json:"peak_rss"`   // bytes, the whole process
	PeakHeap  int64   `json:"peak_heap"`  // bytes of live heap objects, sampled
	PeakStack int64   `json:"peak_stack"` // bytes of goroutine stacks, sampled
}

// TestHostileFeeds parses each hostile body in a child process of its own (a stack overflow kills
// the process; peak RSS is per process) and reports time and peak memory. The shape check must
// answer each as expected, within 400 MB of peak RSS (the worst seen is under 200 MB; without the
// check, 0.5 to 2 GB or a crash).
func TestHostileFeeds(t *testing.T) {
	if os.Getenv("HOSTILE_FEED") != "" {
		hostileChild(t)
		return
	}
	modes := []string{"after"}
	if *hostileBefore {
		modes = append(modes, "before")
	}
	for _, h := range hostileFeeds {
		t.Run(h.name, func(t *testing.T) {
			for _, mode := range modes {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHostileFeeds$", "-test.count=1")
				cmd.Env = append(os.Environ(), "HOSTILE_FEED="+h.name, "HOSTILE_MODE="+mode)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				runErr := cmd.Run()
				var r hostileResult
				_, line, found := strings.Cut(stdout.String(), "\nHOSTILE ")
				line, _, _ = strings.Cut(line, "\n")
				if !found || json.Unmarshal([]byte(line), &r) != nil {
					crash := stderr.String() + stdout.String()
					if i := strings.Index(crash, "fatal error:"); i >= 0 {
						crash, _, _ = strings.Cut(crash[i:], "\n")
					}
					t.Logf("%-18s %-6s crashed (%v): %.200s", h.name, mode, runErr, crash)
					if mode == "after" {
						t.Errorf("the child crashed")
					}
					continue
				}
				t.Logf("%-18s %-6s %6.2fs  peak RSS %5d MB  heap %5d MB  stacks %5d MB  items %d  %s",
					h.name, mode, r.Seconds, r.PeakRSS>>20, r.PeakHeap>>20, r.PeakStack>>20, r.Items, r.Err)
				if mode != "after" {
					continue
				}
				if (h.want == "") != (r.Err == "") || !strings.Contains(r.Err, h.want) {
					t.Errorf("err %q, want %q", r.Err, h.want)
				}
				if r.PeakRSS > 400<<20 {
					t.Errorf("peak RSS %d MB", r.PeakRSS>>20)
				}
			}
		})
	}
}

// hostileChild runs one body through one path and prints the result on a line of its own.
func hostileChild(t *testing.T) {
	name, mode := os.Getenv("HOSTILE_FEED"), os.Getenv("HOSTILE_MODE")
	var body []byte
	for _, h := range hostileFeeds {
		if h.name == name {
			body = h.body()
		}
	}
	if body == nil {
		t.Fatalf("no hostile feed %q", name)
	}
	if len(body) > 10<<20 {
		t.Fatalf("%s is %d bytes, over the body cap", name, len(body))
	}
	runtime.GC()
	var stop atomic.Bool
	var peakHeap, peakStack int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
		for !stop.Load() {
			metrics.Read(samples)
			peakHeap = max(peakHeap, int64(samples[0].Value.Uint64()))
			peakStack = max(peakStack, int64(samples[1].Value.Uint64()))
			time.Sleep(time.Millisecond)
		}
	}()
	var r hostileResult
	start := time.Now()
	switch mode {
	case "before":
		// The path before the shape check: gofeed over the whole body, then every item mapped.
		p := gofeed.NewParser()
		p.RSSTranslator = &gofeed.DefaultRSSTranslator{DisableContentImageScan: true}
		feed, err := p.Parse(bytes.NewReader(body))
		if err != nil {
			r.Err = err.Error()
		} else {
			seen := map[string]bool{}
			for _, item := range feed.Items {
				if a, _, ok := feedItemArticle(item, nil, "en", ingestNow); ok && !seen[a.GUID] {
					seen[a.GUID] = true
					r.Items++
				}
			}
		}
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		items, err := parseFeedBody(ctx, body, nil, "en", ingestNow)
		cancel()
		if err != nil {
			r.Err = err.Error()
		}
		r.Items = len(items)
	}
	r.Seconds = time.Since(start).Seconds()
	stop.Store(true)
	<-sampled
	r.PeakRSS = peakRSS()
	r.PeakHeap, r.PeakStack = peakHeap, peakStack
	if len(r.Err) > 120 {
		r.Err = r.Err[:120] + "…"
	}
	out, _ := json.Marshal(r)
	fmt.Printf("\nHOSTILE %s\n", out)
}

// peakRSS is the process's peak resident set size in bytes. On Linux it is VmHWM: getrusage's
// maxrss there also counts the parent's memory at the fork, which os/exec shares until the exec.
func peakRSS() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
					return kb << 10
				}
			}
		}
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	if runtime.GOOS == "linux" {
		return int64(ru.Maxrss) << 10 // kilobytes there, bytes on macOS
	}
	return int64(ru.Maxrss)
}
