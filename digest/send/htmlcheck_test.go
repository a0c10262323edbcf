package send

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/smtp"
	"slices"
	"strings"
	"testing"
	"time"

	"newsletter/internal/mailpittest"
)

// TestMailpitHTMLCheck hands the digests, confirmation emails and editions, byte for byte as the
// service sends them (editions as it builds them), to the real Mailpit and asks its HTML check
// (caniemail.com's data on each CSS and HTML feature, weighted by how often the message uses it)
// how much of their HTML email clients support: at least 95%.
func TestMailpitHTMLCheck(t *testing.T) {
	msgs := append(wireMessages(t), editionWireMessages(t)...)
	mp := mailpittest.Start(t, mailpittest.Options{})
	for _, m := range msgs {
		if err := smtp.SendMail(mp.SMTPAddr(), nil, "digest@gazette.example", []string{"reader@example.org"}, m.Data); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}
	byID := map[string]string{}
	for _, got := range mp.WaitFor(t, len(msgs), time.Minute) {
		byID[got.MessageID] = got.ID
	}
	for _, m := range msgs {
		id, ok := byID[strings.Trim(m.MessageID(), "<>")]
		if !ok {
			t.Fatalf("%s is not in Mailpit's mailbox", m.Name)
		}
		if pct := mp.HTMLCheck(t, id); pct < 95 {
			t.Errorf("%s: Mailpit's HTML check finds %.2f%% supported, want at least 95%%; what costs most:\n%s", m.Name, pct, htmlCheckWorst(t, mp, id))
		} else {
			t.Logf("%s: %.2f%% supported", m.Name, pct)
		}
	}
}

// htmlCheckWorst lists the features that lower a message's HTML check most. Mailpit takes off the
// largest share of partly supported and the largest share of unsupported, each weighted by how
// many of the message's elements use the feature.
func htmlCheckWorst(t *testing.T, mp *mailpittest.Server, id string) string {
	t.Helper()
	res, err := http.Get(mp.WebURL() + "/api/v1/message/" + id + "/html-check")
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	var check struct {
		Total    struct{ Nodes int }
		Warnings []struct {
			Slug  string
			Score struct {
				Found                int
				Partial, Unsupported float64
			}
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&check); err != nil || check.Total.Nodes == 0 {
		return fmt.Sprintf("unreadable HTML check (%v)", err)
	}
	type cost struct {
		slug                 string
		found                int
		partial, unsupported float64
	}
	var costs []cost
	for _, w := range check.Warnings {
		share := float64(w.Score.Found) / float64(check.Total.Nodes)
		costs = append(costs, cost{w.Slug, w.Score.Found, w.Score.Partial * share, w.Score.Unsupported * share})
	}
	slices.SortFunc(costs, func(a, b cost) int { return cmp.Compare(b.partial+b.unsupported, a.partial+a.unsupported) })
	var b strings.Builder
	for _, c := range costs[:min(5, len(costs))] {
		fmt.Fprintf(&b, "  %s on %d of %d elements: -%.2f partly, -%.2f not supported\n", c.slug, c.found, check.Total.Nodes, c.partial, c.unsupported)
	}
	return b.String()
}
