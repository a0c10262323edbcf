package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"newsletter/internal/mailpittest"
	"newsletter/internal/smtptest"
)

// runDevDefaults are the settings scripts/run-dev (make run) exports, read from the script itself
// so that this test follows it when it changes.
func runDevDefaults(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../scripts/run-dev")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^export (NEWSLETTER_[A-Z_]+)=\$\{NEWSLETTER_[A-Z_]+:-(.*)\}$`).FindAllStringSubmatch(string(b), -1) {
		env[m[1]] = m[2]
	}
	if env["NEWSLETTER_DEMO"] != "true" || env["NEWSLETTER_SMTP_URL"] == "" {
		t.Fatalf("scripts/run-dev no longer exports NEWSLETTER_DEMO=true and NEWSLETTER_SMTP_URL as this test expects: %v", env)
	}
	return env
}

// TestFirstRun walks the README's first steps as a newcomer takes them after `make run`: subscribe
// on the page, find the confirmation email in Mailpit's web UI, confirm with the link in it, send the
// digest with `newsletter digest send --lang all --yes` and find it in Mailpit. The service runs on
// make run's settings, except the ports and the database, which are the test's own; the catcher is
// the same Mailpit binary make run starts.
func TestFirstRun(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Options{})
	env := runDevDefaults(t)
	env["NEWSLETTER_SMTP_URL"] = mp.SMTPURL()
	// startService's test settings give way to the defaults a newcomer gets.
	for _, k := range []string{"NEWSLETTER_SECRET", "NEWSLETTER_PUBLICATION_NAME", "NEWSLETTER_FROM", "NEWSLETTER_SUBSCRIBE_RATE_LIMIT"} {
		env[k] = ""
	}
	s := startService(t, env)
	ctx := newBrowser(t)
	do(t, ctx, "desktop viewport", chromedp.EmulateViewport(1280, 900))

	// 1. Subscribe on the subscribe page.
	const email = "newcomer@example.org"
	do(t, ctx, "fill the subscribe form",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("name"), "Newcomer"),
	)
	if st := press(t, ctx, "form.card button[type=submit]"); st != 200 {
		t.Fatalf("subscribe answered %d", st)
	}
	if h1 := eval(t, ctx, "after subscribing", chromedp.Text(chromedp.CSS("h1"))); h1 != "Check your inbox" {
		t.Fatalf("after subscribing: %q", h1)
	}

	// 2. Find the confirmation email in Mailpit's web UI, as the newcomer does at :8025.
	const confirmSubject = "Confirm your subscription to The Weekly Digest"
	do(t, ctx, "open Mailpit", chromedp.Navigate(mp.WebURL()+"/"))
	uiID := eval(t, ctx, "the confirmation email in Mailpit's list", chromedp.PollFunction[string](
		`(subject, email) => { const a = [...document.querySelectorAll('a.message')].find(a => a.textContent.includes(subject) && a.textContent.includes(email)); return a ? a.id : ''; }`,
		chromedp.WithPollingArgs(confirmSubject, email), chromedp.WithPollingTimeout(60*time.Second)))
	do(t, ctx, "open the email in Mailpit",
		chromedp.Click(chromedp.CSS(`a.message[id="`+uiID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("preview-html")))
	eval(t, ctx, "the email's HTML shown in Mailpit", chromedp.PollFunction[bool](previewShows,
		chromedp.WithPollingArgs("Confirm my subscription"), chromedp.WithPollingTimeout(30*time.Second)))
	if shown := eval(t, ctx, "Mailpit's message view", chromedp.Text(chromedp.CSS("body"))); !strings.Contains(shown, confirmSubject) || !strings.Contains(shown, email) {
		t.Fatalf("Mailpit's message view does not show the subject and the reader:\n%s", shown)
	}
	screenshot(t, ctx, "firstrun-mailpit-confirmation")

	// 3. The link in that email, from the message as Mailpit received it.
	msgs := mp.Messages(t)
	if len(msgs) != 1 || msgs[0].ID != uiID || msgs[0].Subject != confirmSubject || strings.Join(msgs[0].Recipients(), ",") != email {
		t.Fatalf("Mailpit's mailbox: %+v, want the one confirmation email shown as %s", msgs, uiID)
	}
	confirm := parseMail(t, smtptest.Message{Data: mp.Raw(t, uiID)})
	link := findLink(t, confirm.Part(t, "text/plain").Body, "/confirm/")
	if !strings.HasPrefix(link, s.URL+"/confirm/") {
		t.Fatalf("confirm link %s does not lead to the service at %s", redactToken(link), s.URL)
	}

	// 4. Open it and press the button.
	do(t, ctx, "open the confirm link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("main form button")))
	if st := press(t, ctx, "main form button"); st != 200 {
		t.Fatalf("confirm answered %d", st)
	}
	if h1 := eval(t, ctx, "after confirming", chromedp.Text(chromedp.CSS("h1"))); h1 != "You are subscribed" {
		t.Fatalf("after confirming: %q", h1)
	}
	if st := readerStatus(t, s, email); st != "confirmed" {
		t.Fatalf("after pressing the button the reader is %s, want confirmed", st)
	}

	// 5. The README's command, run as the binary runs it.
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"digest", "send", "--lang", "all", "--yes"},
		func(k string) string { return s.Env[k] }, strings.NewReader(""), &out, &errOut)
	if code != exitOK || !strings.Contains(out.String(), "sent 1, failed 0") {
		t.Fatalf("digest send --lang all --yes: exit %d, want 0 and one digest sent\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}

	// 6. The digest is in Mailpit for that reader.
	msgs = mp.WaitFor(t, 2, 60*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("Mailpit holds %d messages, want the confirmation and one digest", len(msgs))
	}
	d := msgs[1]
	if got := strings.Join(d.Recipients(), ","); got != email {
		t.Errorf("digest To %q, want %q", got, email)
	}
	lead, more, ok := strings.Cut(d.Subject, " — ")
	if !ok || !regexp.MustCompile(`^and \d+ more stor(y|ies)$`).MatchString(more) {
		t.Errorf("digest subject %q, want the lead story and how many more", d.Subject)
	}
	var n int
	if err := s.DB.Get(&n, `SELECT count(*) FROM articles WHERE lang = 'en' AND title = $1`, lead); err != nil || n != 1 {
		t.Errorf("digest subject %q does not lead with a demo article (%d found, %v)", d.Subject, n, err)
	}
	dm := parseMail(t, smtptest.Message{Data: mp.Raw(t, d.ID)})
	if dm.Get("List-Unsubscribe") == "" {
		t.Error("the digest has no List-Unsubscribe header")
	}
	t.Logf("Mailpit's HTML check of the digest: %.0f%% supported", mp.HTMLCheck(t, d.ID))
	if n := len(s.SMTP.Messages()); n != 0 {
		t.Errorf("%d emails went to the test's own SMTP server instead of Mailpit", n)
	}

	do(t, ctx, "the digest in Mailpit",
		chromedp.Navigate(mp.WebURL()+"/view/"+d.ID),
		chromedp.WaitVisible(chromedp.ID("preview-html")))
	eval(t, ctx, "the digest's HTML shown in Mailpit", chromedp.PollFunction[bool](previewShows,
		chromedp.WithPollingArgs(lead), chromedp.WithPollingTimeout(30*time.Second)))
	screenshot(t, ctx, "firstrun-mailpit-digest")
}

// previewShows is true once Mailpit's HTML preview of the open message shows the text.
const previewShows = `text => { const f = document.getElementById('preview-html'); const b = f && f.contentDocument && f.contentDocument.body; return !!b && b.innerText.includes(text); }`
