package send

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// spamExempt names, per message, a rule its score is judged without, and why. None is: the
// Russian confirmation names the publication only in its subject and masthead, so its Latin "e"
// (confirm link, the reader's address) stay under MIXED_ES's 20.
var spamExempt = map[string]string{}

// TestSpamAssassin scores the digests, the confirmation emails and the editions, as they go on the
// wire, with SpamAssassin's local rules (no network tests, so the figure is the same on every
// machine): each must score at most 0. A filter's points for how a message is made (hidden text,
// mixed scripts, markup) are points the publication can avoid.
func TestSpamAssassin(t *testing.T) {
	sa, err := exec.LookPath("spamassassin")
	if err != nil {
		t.Fatal("spamassassin is not installed: install Debian's spamassassin (apt-get install spamassassin)")
	}
	msgs := append(wireMessages(t), editionWireMessages(t)...)
	dir := t.TempDir()
	// One run for all messages: SpamAssassin takes longer to start than to score one. The added
	// header lists each rule hit with its score (X-Spam-Status rounds the total to 0.1).
	args := []string{"-L", "-t", "-x", "--cf=add_header all Tests _TESTSSCORES(,)_"}
	for _, m := range msgs {
		path := filepath.Join(dir, m.Name+".eml")
		if err := os.WriteFile(path, m.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	cmd := exec.Command(sa, args...)
	// A home of its own: no user preferences, and its Bayes and welcomelist data stay out of the
	// user's and do not carry over from one run to the next.
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spamassassin: %v\n%s", err, stderr.String())
	}
	reports := splitReports(string(out))
	if len(reports) != len(msgs) {
		t.Fatalf("spamassassin printed %d reports for %d messages:\n%s%s", len(reports), len(msgs), out, stderr.String())
	}
	for i, m := range msgs {
		rep := reports[i]
		if id := m.MessageID(); id == "" || !strings.Contains(rep, id) {
			t.Fatalf("%s: report %d is not about Message-ID %q", m.Name, i, id)
		}
		rules, list, err := ruleScores(rep)
		if err != nil {
			t.Fatalf("%s: %v\n%s", m.Name, err, rep)
		}
		var score float64
		for name, s := range rules {
			if name != spamExempt[m.Name] {
				score += s
			}
		}
		judged := ""
		if r := spamExempt[m.Name]; r != "" {
			judged = " without " + r
		}
		if score > 0 {
			t.Errorf("%s scores %.3f%s with spamassassin -L, want at most 0: %s", m.Name, score, judged, list)
		} else {
			t.Logf("%s scores %.3f%s: %s", m.Name, score, judged, list)
		}
	}
}

// splitReports cuts spamassassin -t output into one piece per message: each starts with the
// checker's header line.
func splitReports(out string) []string {
	const start = "X-Spam-Checker-Version:"
	var reps []string
	for _, line := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(line, start) {
			reps = append(reps, "")
		}
		if len(reps) > 0 {
			reps[len(reps)-1] += line
		}
	}
	return reps
}

var testsHeader = regexp.MustCompile(`(?m)^X-Spam-Tests:(.*(?:\n[ \t].*)*)`)

// ruleScores reads the X-Spam-Tests header (RULE=score,...) of a report: each rule hit with its
// score, and the header's list as it reads.
func ruleScores(report string) (map[string]float64, string, error) {
	m := testsHeader.FindStringSubmatch(report)
	if m == nil {
		return nil, "", errors.New("no X-Spam-Tests header in the report")
	}
	list := strings.Join(strings.Fields(m[1]), "")
	rules := map[string]float64{}
	for _, r := range strings.Split(list, ",") {
		if r == "" || r == "none" {
			continue
		}
		name, val, _ := strings.Cut(r, "=")
		s, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, "", fmt.Errorf("unreadable rule score %q", r)
		}
		rules[name] = s
	}
	return rules, list, nil
}
