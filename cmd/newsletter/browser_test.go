package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"newsletter/subscribers"
)

// screenshotDir collects screenshots for people to look at (git-ignored).
const screenshotDir = "../../testdata/screenshots"

// newBrowser starts headless Chromium (found on PATH as chromium, or NEWSLETTER_TEST_CHROME) for
// the test. A missing browser fails the test: pages people use are tested in a real one.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
	)
	if p := os.Getenv("NEWSLETTER_TEST_CHROME"); p != "" {
		opts = append(opts, chromedp.ExecPath(p))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium (install Debian's chromium, or set NEWSLETTER_TEST_CHROME): %v", err)
	}
	// A headless tab never has the window's focus, so :focus-visible would never match.
	if _, err := chromedp.Call(bctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		t.Fatal(err)
	}
	return bctx
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// press clicks a submit button and waits for the page it leads to; it returns that page's status.
func press(t *testing.T, ctx context.Context, selector string) int64 {
	t.Helper()
	res, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("press %s: %v", selector, err)
	}
	if res == nil {
		t.Fatalf("press %s: no page loaded", selector)
	}
	return res.Status
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := eval(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pageChecks are the accessibility and layout rules every reader page keeps, as JavaScript
// returning a list of problems.
const pageChecks = `(() => {
  const problems = [];
  const rgb = s => (s.match(/[\d.]+/g) || []).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(rgb(a)), lum(rgb(b))].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const bg = getComputedStyle(document.body).backgroundColor;
  for (const el of document.querySelectorAll('p, label, li, h1, h2, a, dt, dd')) {
    if (el.closest('[aria-hidden=true]')) continue;
    const r = ratio(getComputedStyle(el).color, bg);
    if (r < 4.5) problems.push('contrast ' + r.toFixed(2) + ' of ' + el.tagName + ' "' + el.textContent.trim().slice(0, 30) + '"');
  }
  for (const b of document.querySelectorAll('button')) {
    const cs = getComputedStyle(b);
    const back = cs.backgroundColor.startsWith('rgba(0, 0, 0, 0)') ? bg : cs.backgroundColor;
    const r = ratio(cs.color, back);
    if (r < 4.5) problems.push('button contrast ' + r.toFixed(2));
  }
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.closest('[aria-hidden=true]')) continue;
    if (!el.labels || el.labels.length === 0) problems.push('no label for #' + el.id);
    el.focus();
    const cs = getComputedStyle(el);
    if (cs.outlineStyle === 'none' || parseFloat(cs.outlineWidth) < 2) problems.push('no focus outline on #' + el.id);
  }
  document.activeElement && document.activeElement.blur();
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  return problems;
})()`

// TestBrowserSubscribe drives the subscribe page in headless Chromium: it fills the form, takes the
// confirmation link from the email, presses the button, and then unsubscribes with the page's button.
func TestBrowserSubscribe(t *testing.T) {
	s := startService(t, nil)
	ctx := newBrowser(t)

	// How the page looks on a desktop and on a phone, in both languages.
	views := []struct {
		name          string
		width, height int64
		mobile        bool
		path          string
	}{
		{"subscribe-desktop", 1280, 900, false, "/"},
		{"subscribe-desktop-ru", 1280, 900, false, "/?lang=ru"},
		{"subscribe-phone", 390, 844, true, "/"},
		{"subscribe-phone-ru", 390, 844, true, "/?lang=ru"},
		{"subscribe-phone-dark", 390, 844, true, "/"},
	}
	for _, v := range views {
		scheme := "light"
		if strings.HasSuffix(v.name, "-dark") {
			scheme = "dark"
		}
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}); err != nil {
			t.Fatal(err)
		}
		emulate := chromedp.EmulateViewport(v.width, v.height)
		if v.mobile {
			emulate = chromedp.EmulateViewport(v.width, v.height, chromedp.EmulateScale(2), chromedp.EmulateMobile)
		}
		do(t, ctx, v.name, emulate, chromedp.Navigate(s.URL+v.path), chromedp.WaitVisible(chromedp.ID("email")))
		if problems := eval(t, ctx, "check "+v.name, chromedp.Evaluate[[]string](pageChecks)); len(problems) > 0 {
			t.Errorf("%s: %s", v.name, strings.Join(problems, "; "))
		}
		hidden := eval(t, ctx, "honeypot", chromedp.Evaluate[bool](`(() => { const r = document.getElementById('website').getBoundingClientRect(); return r.right <= 0 || r.bottom <= 0; })()`))
		if !hidden {
			t.Errorf("%s: the honeypot field is on screen", v.name)
		}
		screenshot(t, ctx, v.name)
	}

	// A typo the browser would not catch reaches the server: the form comes back with the message
	// beside the field and the values kept.
	do(t, ctx, "bad address",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('form.card').noValidate = true`),
		chromedp.SendKeys(chromedp.ID("email"), "reader@example"),
		chromedp.SendKeys(chromedp.ID("name"), "Reader"),
	)
	if st := press(t, ctx, "form.card button[type=submit]"); st != 400 {
		t.Fatalf("bad address answered %d, want 400", st)
	}
	if msg := eval(t, ctx, "field error", chromedp.Text(chromedp.ID("email-error"))); !strings.Contains(msg, "valid email address") {
		t.Errorf("field error %q", msg)
	}
	if v := eval(t, ctx, "kept name", chromedp.Value(chromedp.ID("name"))); v != "Reader" {
		t.Errorf("name field %q after the error, want it kept", v)
	}
	screenshot(t, ctx, "subscribe-error-phone-dark")
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}}); err != nil {
		t.Fatal(err)
	}

	// A reader on a phone subscribes in Russian.
	const email = "browser.reader@example.org"
	do(t, ctx, "fill the form",
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
		chromedp.SendKeys(chromedp.ID("name"), "Читатель"),
		chromedp.SetValue(chromedp.ID("lang"), "ru"),
	)
	if st := press(t, ctx, "form.card button[type=submit]"); st != 200 {
		t.Fatalf("subscribe answered %d", st)
	}
	if h1 := eval(t, ctx, "result", chromedp.Text(chromedp.CSS("h1"))); h1 != "Проверьте почту" {
		t.Errorf("after subscribing: %q", h1)
	}
	screenshot(t, ctx, "subscribe-accepted-phone-ru")

	m := parseMail(t, s.SMTP.WaitFor(t, 1, 30*time.Second)[0])
	link := findLink(t, m.Part(t, "text/plain").Body, "/confirm/")
	do(t, ctx, "open the confirm link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("main form button")))
	if h1 := eval(t, ctx, "confirm page", chromedp.Text(chromedp.CSS("h1"))); h1 != "Подтвердите подписку" {
		t.Errorf("confirm page: %q", h1)
	}
	if problems := eval(t, ctx, "check confirm page", chromedp.Evaluate[[]string](pageChecks)); len(problems) > 0 {
		t.Errorf("confirm page: %s", strings.Join(problems, "; "))
	}
	if st := readerStatus(t, s, email); st != "pending" {
		t.Fatalf("opening the link changed the reader to %s", st)
	}
	screenshot(t, ctx, "confirm-phone-ru")
	if st := press(t, ctx, "main form button"); st != 200 {
		t.Fatalf("confirm answered %d", st)
	}
	if h1 := eval(t, ctx, "confirmed", chromedp.Text(chromedp.CSS("h1"))); h1 != "Вы подписаны" {
		t.Errorf("after confirming: %q", h1)
	}
	if st := readerStatus(t, s, email); st != "confirmed" {
		t.Fatalf("after pressing the button: %s, want confirmed", st)
	}

	var uuid string
	if err := s.DB.Get(&uuid, `SELECT uuid FROM subscribers WHERE email = $1`, email); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "open the unsubscribe link",
		chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(subscribers.NewSigner([]byte(e2eSecret)).UnsubscribeURL(s.URL, uuid)),
		chromedp.WaitVisible(chromedp.CSS("main form button")))
	if h1 := eval(t, ctx, "unsubscribe page", chromedp.Text(chromedp.CSS("h1"))); h1 != "Отписаться?" {
		t.Errorf("unsubscribe page: %q", h1)
	}
	screenshot(t, ctx, "unsubscribe-desktop-ru")
	if st := readerStatus(t, s, email); st != "confirmed" {
		t.Fatalf("opening the unsubscribe link changed the reader to %s", st)
	}
	if st := press(t, ctx, "main form button"); st != 200 {
		t.Fatalf("unsubscribe answered %d", st)
	}
	if h1 := eval(t, ctx, "unsubscribed", chromedp.Text(chromedp.CSS("h1"))); h1 != "Вы отписались" {
		t.Errorf("after unsubscribing: %q", h1)
	}
	if st := readerStatus(t, s, email); st != "unsubscribed" {
		t.Fatalf("after pressing the button: %s, want unsubscribed", st)
	}

	do(t, ctx, "manage page",
		chromedp.Navigate(subscribers.NewSigner([]byte(e2eSecret)).ManageURL(s.URL, uuid)),
		chromedp.WaitVisible(chromedp.ID("erase-confirm")))
	if problems := eval(t, ctx, "check manage page", chromedp.Evaluate[[]string](pageChecks)); len(problems) > 0 {
		t.Errorf("manage page: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "manage-desktop-ru")
}
