package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"newsletter/internal/testdb"
	"newsletter/subscribers"
	"newsletter/templates"
)

var testSecret = []byte("handler-test-secret-0123456789")

// webFixture is a Handler on a real database behind a real HTTP server.
type webFixture struct {
	t      *testing.T
	h      *Handler
	srv    *httptest.Server
	db     *sqlx.DB
	store  *subscribers.Store
	signer *subscribers.Signer
	wakes  *wakeCounter
}

type wakeCounter struct{ n atomic.Int32 }

func (w *wakeCounter) Wake() { w.n.Add(1) }

func newWebFixture(t *testing.T, opts HandlerOptions) *webFixture {
	t.Helper()
	db := testdb.New(t)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := templates.ParsePages(fsys, cat)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Languages == nil {
		opts.Languages = []string{"en", "ru"}
	}
	if opts.Publication == "" {
		opts.Publication = "The Test Gazette"
	}
	if opts.Schedule == "" {
		opts.Schedule = "CRON_TZ=UTC 0 8 * * MON"
	}
	f := &webFixture{t: t, db: db, store: subscribers.NewStore(db, testSecret), signer: subscribers.NewSigner(testSecret), wakes: &wakeCounter{}}
	f.h = NewHandler(f.store, f.signer, pages, cat, f.wakes, opts, nil, prometheus.NewRegistry())
	// The same table as cmd/newsletter/routes.go.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", f.h.SubscribePage)
	mux.HandleFunc("POST /subscribe", f.h.Subscribe)
	mux.HandleFunc("OPTIONS /subscribe", f.h.Preflight)
	mux.HandleFunc("GET /confirm/{token}", f.h.ConfirmPage)
	mux.HandleFunc("POST /confirm/{token}", f.h.Confirm)
	mux.HandleFunc("GET /unsubscribe/{token}", f.h.UnsubscribePage)
	mux.HandleFunc("POST /unsubscribe/{token}", f.h.Unsubscribe)
	mux.HandleFunc("GET /manage/{token}", f.h.ManagePage)
	mux.HandleFunc("POST /manage/{token}", f.h.Manage)
	mux.HandleFunc("GET /manage/{token}/data.json", f.h.Data)
	mux.HandleFunc("POST /manage/{token}/erase", f.h.Erase)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// response is what a test looks at.
type response struct {
	status int
	header http.Header
	body   string
}

func (f *webFixture) do(method, path, contentType, body string, header ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

const formType = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// count returns the number of rows in table.
func (f *webFixture) count(table string) int {
	f.t.Helper()
	var n int
	if err := f.db.Get(&n, "SELECT count(*) FROM "+table); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *webFixture) nothingStored() {
	f.t.Helper()
	for _, table := range []string{"subscribers", "consents", "outbox"} {
		if n := f.count(table); n != 0 {
			f.t.Errorf("%s has %d rows, want none", table, n)
		}
	}
}

// subscribed stores a pending reader and returns it.
func (f *webFixture) subscribed(email string) subscribers.Subscriber {
	f.t.Helper()
	ctx := context.Background()
	if err := f.store.Subscribe(ctx, email, "Reader", "en", subscribers.Consent{IP: "127.0.0.1", Source: "form", TextVersion: ConsentTextVersion}); err != nil {
		f.t.Fatal(err)
	}
	var uuid string
	if err := f.db.Get(&uuid, "SELECT uuid FROM subscribers WHERE lower(email) = lower($1)", email); err != nil {
		f.t.Fatal(err)
	}
	s, err := f.store.ByUUID(ctx, uuid)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *webFixture) reload(s subscribers.Subscriber) subscribers.Subscriber {
	f.t.Helper()
	s, err := f.store.ByUUID(context.Background(), s.UUID)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *webFixture) token(p subscribers.Purpose, s subscribers.Subscriber) string {
	return f.signer.Token(p, s.UUID, time.Now())
}

// leakPattern matches what must never reach a response: SQL text, driver errors, Go panics.
var leakPattern = regexp.MustCompile(`pq: |sql: |SELECT |INSERT INTO|UPDATE \w+ SET|goroutine \d|panic|\.go:\d+`)

// clean fails when body carries SQL text, a stack trace, or any of the given tokens.
func clean(t *testing.T, r response, tokens ...string) {
	t.Helper()
	if m := leakPattern.FindString(r.body); m != "" {
		t.Errorf("response leaks %q:\n%s", m, r.body)
	}
	for _, tok := range tokens {
		if len(tok) >= 20 && strings.Contains(r.body, tok) {
			t.Errorf("response carries a token")
		}
	}
}

func TestSubscribeBadInput(t *testing.T) {
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 58) + ".org"
	if len(long) != 255 {
		t.Fatalf("long address has %d characters", len(long))
	}
	big := strings.Repeat("x", 70<<10)
	tests := []struct {
		name        string
		contentType string
		body        string
		accept      string
		wantStatus  int
		wantField   string // JSON answers only
	}{
		{"EmptyEmail", formType, form("email", "", "lang", "en"), "", 400, ""},
		{"MissingEmail", formType, form("name", "Ann"), "", 400, ""},
		{"BlankEmail", formType, form("email", "   "), "", 400, ""},
		{"InvalidSyntax", formType, form("email", "not-an-address"), "", 400, ""},
		{"TwoAts", formType, form("email", "a@b@example.org"), "", 400, ""},
		{"NoDomainDot", formType, form("email", "ann@localhost"), "", 400, ""},
		{"DisplayNameForm", formType, form("email", "Ann <ann@example.org>"), "", 400, ""},
		{"TooLong255", formType, form("email", long), "", 400, ""},
		{"CRLFInEmail", formType, form("email", "ann@example.org\r\nBcc: all@example.org"), "", 400, ""},
		{"LFInEmail", formType, form("email", "ann@example.org\nBcc: x@example.org"), "", 400, ""},
		{"NULInEmail", formType, form("email", "ann@example.org\x00"), "", 400, ""},
		{"CRInName", formType, form("email", "ann@example.org", "name", "Ann\rBcc: x"), "", 400, ""},
		{"NULInName", formType, form("email", "ann@example.org", "name", "Ann\x00"), "", 400, ""},
		{"LFInLang", formType, form("email", "ann@example.org", "lang", "en\n"), "", 400, ""},
		{"UnknownLang", formType, form("email", "ann@example.org", "lang", "de"), "", 400, ""},
		{"NameOver100", formType, form("email", "ann@example.org", "name", strings.Repeat("я", 101)), "", 400, ""},
		{"NameBidiOverride", formType, form("email", "ann@example.org", "name", "Ann\u202egro.elpmaxe"), "", 400, ""},
		{"InvalidUTF8Name", formType, "email=ann%40example.org&name=%ff%fe", "", 400, ""},
		{"BadPercentEncoding", formType, "email=%zz", "", 400, ""},
		{"FormOver64KiB", formType, form("email", "ann@example.org", "name", big), "", 413, ""},
		{"MultipartOver64KiB", "multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\n" + big + "\r\n--XX--\r\n", "", 413, ""},
		{"WrongContentType", "text/plain", "email=ann@example.org", "", 415, ""},
		{"NoContentType", "", "email=ann@example.org", "", 415, ""},
		{"XMLContentType", "application/xml", "<email>ann@example.org</email>", "application/json", 415, ""},
		{"JSONMalformed", "application/json", `{"email":`, "", 400, ""},
		{"JSONArray", "application/json", `["ann@example.org"]`, "", 400, ""},
		{"JSONNumberEmail", "application/json", `{"email":42}`, "", 400, ""},
		{"JSONTrailingData", "application/json", `{"email":"ann@example.org"} {"email":"bob@example.org"}`, "", 400, ""},
		{"JSONEmpty", "application/json", ``, "", 400, ""},
		{"JSONOver64KiB", "application/json", `{"email":"ann@example.org","name":"` + big + `"}`, "", 413, ""},
		{"JSONInvalidEmail", "application/json", `{"email":"ann.example.org"}`, "", 400, "email"},
		{"JSONMissingEmail", "application/json", `{"name":"Ann","lang":"en"}`, "", 400, "email"},
		{"JSONCRLFEmail", "application/json", `{"email":"ann@example.org\r\nBcc: x@example.org"}`, "", 400, "email"},
		{"JSONNULName", "application/json", `{"email":"ann@example.org","name":"A\u0000"}`, "", 400, "name"},
		{"JSONUnknownLang", "application/json", `{"email":"ann@example.org","lang":"xx"}`, "", 400, "lang"},
		{"JSONLongName", "application/json", `{"email":"ann@example.org","name":"` + strings.Repeat("n", 101) + `"}`, "", 400, "name"},
		{"FormAskingJSON", formType, form("email", "nope"), "application/json", 400, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newWebFixture(t, HandlerOptions{})
			r := f.do("POST", "/subscribe", tt.contentType, tt.body, "Accept", tt.accept)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", r.status, tt.wantStatus, r.body)
			}
			clean(t, r)
			if tt.wantField != "" {
				var got struct{ Error, Field string }
				if err := json.Unmarshal([]byte(r.body), &got); err != nil {
					t.Fatalf("answer is not JSON: %v\n%s", err, r.body)
				}
				if got.Field != tt.wantField || got.Error == "" {
					t.Errorf("got field %q error %q, want field %q and a message", got.Field, got.Error, tt.wantField)
				}
			}
			if strings.Contains(r.body, "\r\nBcc") || strings.Contains(r.body, "\x00") {
				t.Error("answer echoes the injected characters")
			}
			f.nothingStored()
			if n := f.wakes.n.Load(); n != 0 {
				t.Errorf("mailer woken %d times for a refused request", n)
			}
			if got := testutil.ToFloat64(f.h.requests.WithLabelValues("invalid")); got != 1 {
				t.Errorf("invalid counter = %v, want 1", got)
			}
		})
	}
}

func TestSubscribeFormErrorKeepsValues(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	r := f.do("POST", "/subscribe", formType, form("email", "ann.example.org", "name", "Ann <b>Lee</b>", "lang", "ru"))
	if r.status != 400 {
		t.Fatalf("status %d, want 400", r.status)
	}
	for _, want := range []string{
		`value="ann.example.org"`,
		`value="Ann &lt;b&gt;Lee&lt;/b&gt;"`,
		`<option value="ru" lang="ru" selected>`,
		`aria-invalid="true" aria-describedby="email-error"`,
		`id="email-error">Введите правильный адрес`,
		`<html lang="ru">`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("form page lacks %s", want)
		}
	}
}

func TestSubscribeAcceptedSameAnswer(t *testing.T) {
	tests := []struct {
		name, contentType, body, accept string
		wantType                        string
	}{
		{"Form", formType, form("email", "Ann@Example.ORG", "name", "Ann", "lang", "en"), "", "text/html; charset=utf-8"},
		{"JSON", "application/json", `{"email":"Ann@Example.ORG","name":"Ann","lang":"en","source":"site"}`, "", "application/json; charset=utf-8"},
		{"FormAcceptJSON", formType, form("email", "Ann@Example.ORG", "lang", "en"), "application/json", "application/json; charset=utf-8"},
		{"Multipart", "multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nAnn@Example.ORG\r\n--XX\r\nContent-Disposition: form-data; name=\"lang\"\r\n\r\nen\r\n--XX--\r\n", "", "text/html; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newWebFixture(t, HandlerOptions{})
			post := func() response {
				t.Helper()
				r := f.do("POST", "/subscribe", tt.contentType, tt.body, "Accept", tt.accept)
				if r.status != 200 {
					t.Fatalf("status %d, want 200\n%s", r.status, r.body)
				}
				if got := r.header.Get("Content-Type"); got != tt.wantType {
					t.Errorf("Content-Type %q, want %q", got, tt.wantType)
				}
				return r
			}
			first := post()
			if n := f.count("subscribers"); n != 1 {
				t.Fatalf("%d readers stored, want 1", n)
			}
			pending := post() // the same address, still pending
			var uuid string
			if err := f.db.Get(&uuid, "SELECT uuid FROM subscribers"); err != nil {
				t.Fatal(err)
			}
			if _, err := f.store.Confirm(context.Background(), uuid, time.Now()); err != nil {
				t.Fatal(err)
			}
			confirmed := post()
			unsubscribed := func() response {
				if _, err := f.store.Unsubscribe(context.Background(), uuid); err != nil {
					t.Fatal(err)
				}
				return post()
			}()
			for name, r := range map[string]response{"pending": pending, "confirmed": confirmed, "unsubscribed": unsubscribed} {
				if r.body != first.body {
					t.Errorf("answer for a %s address differs from a new one:\n%s\n---\n%s", name, first.body, r.body)
				}
			}
			if n := f.count("subscribers"); n != 1 {
				t.Errorf("%d readers stored, want 1", n)
			}
			var email string
			f.db.Get(&email, "SELECT email FROM subscribers")
			if email != "Ann@example.org" {
				t.Errorf("stored %q, want Ann@example.org", email)
			}
			if n := f.wakes.n.Load(); n != 4 {
				t.Errorf("mailer woken %d times, want 4", n)
			}
			if got := testutil.ToFloat64(f.h.requests.WithLabelValues("accepted")); got != 4 {
				t.Errorf("accepted counter = %v, want 4", got)
			}
		})
	}
}

func TestSubscribeRecordsConsent(t *testing.T) {
	tests := []struct {
		name, contentType, body, wantSource string
	}{
		{"Form", formType, form("email", "ann@example.org"), "form"},
		{"API", "application/json", `{"email":"ann@example.org"}`, "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newWebFixture(t, HandlerOptions{})
			if r := f.do("POST", "/subscribe", tt.contentType, tt.body, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Accept-Language", "ru"); r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			var c struct {
				IP          string `db:"ip"`
				UserAgent   string `db:"user_agent"`
				Source      string `db:"source"`
				TextVersion string `db:"text_version"`
			}
			if err := f.db.Get(&c, "SELECT ip, user_agent, source, text_version FROM consents"); err != nil {
				t.Fatal(err)
			}
			// Truncated to its /24 by default (NEWSLETTER_CONSENT_IP, TestConsentIPKept).
			if c.IP != "127.0.0.0" || c.UserAgent != "Firefox 128" || c.Source != tt.wantSource || c.TextVersion != ConsentTextVersion {
				t.Errorf("consent %+v", c)
			}
			var lang string
			f.db.Get(&lang, "SELECT lang FROM subscribers")
			if lang != "ru" {
				t.Errorf("reader's language %q, want ru (from Accept-Language when none chosen)", lang)
			}
		})
	}
}

func TestSubscribeHoneypot(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	accepted := f.do("POST", "/subscribe", formType, form("email", "real@example.org", "lang", "en"))
	f.db.MustExec("DELETE FROM subscribers")
	f.db.MustExec("DELETE FROM outbox")
	wakes := f.wakes.n.Load()

	bot := f.do("POST", "/subscribe", formType, form("email", "bot@example.org", "lang", "en", "website", "http://spam.example"))
	if bot.status != 200 || bot.body != accepted.body {
		t.Errorf("honeypot answer %d differs from an accepted one:\n%s", bot.status, bot.body)
	}
	botJSON := f.do("POST", "/subscribe", "application/json", `{"email":"bot@example.org","website":"x"}`)
	if botJSON.status != 200 || !strings.Contains(botJSON.body, `"status":"ok"`) {
		t.Errorf("JSON honeypot answer %d %s", botJSON.status, botJSON.body)
	}
	f.nothingStored()
	if f.wakes.n.Load() != wakes {
		t.Error("mailer woken for a bot")
	}
	if got := testutil.ToFloat64(f.h.requests.WithLabelValues("honeypot")); got != 2 {
		t.Errorf("honeypot counter = %v, want 2", got)
	}
}

func TestSubscribeRateLimit(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{RateLimit: 3, TrustProxy: true})
	for i := range 3 {
		if r := f.do("POST", "/subscribe", formType, form("email", fmt.Sprintf("r%d@example.org", i))); r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
	// Bad requests count too: a client cannot probe without limit by sending junk.
	r := f.do("POST", "/subscribe", formType, form("email", "r9@example.org"))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("4th request: status %d, want 429", r.status)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", r.header.Get("Retry-After"))
	}
	rj := f.do("POST", "/subscribe", "application/json", `{"email":"r9@example.org"}`)
	if rj.status != 429 || !strings.Contains(rj.body, `"error"`) || rj.header.Get("Retry-After") == "" {
		t.Errorf("JSON 429: %d %s", rj.status, rj.body)
	}
	if n := f.count("subscribers"); n != 3 {
		t.Errorf("%d readers stored, want 3", n)
	}
	// Another client behind the trusted proxy has its own allowance.
	if r := f.do("POST", "/subscribe", formType, form("email", "other@example.org"), "X-Forwarded-For", "203.0.113.9"); r.status != 200 {
		t.Errorf("other client: status %d, want 200", r.status)
	}
	if got := testutil.ToFloat64(f.h.requests.WithLabelValues("rate_limited")); got != 2 {
		t.Errorf("rate_limited counter = %v, want 2", got)
	}
}

func TestSubscribeRateLimitOff(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{RateLimit: 0})
	for i := range 20 {
		if r := f.do("POST", "/subscribe", formType, form("email", fmt.Sprintf("r%d@example.org", i))); r.status != 200 {
			t.Fatalf("request %d: status %d", i, r.status)
		}
	}
}

func TestCORS(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{CORSOrigins: []string{"https://news.example.org"}})
	tests := []struct {
		name, method, origin string
		wantAllow            string
	}{
		{"PreflightListed", "OPTIONS", "https://news.example.org", "https://news.example.org"},
		{"PreflightUnlisted", "OPTIONS", "https://evil.example", ""},
		{"PreflightLookalike", "OPTIONS", "https://news.example.org.evil.example", ""},
		{"PostListed", "POST", "https://news.example.org", "https://news.example.org"},
		{"PostUnlisted", "POST", "https://evil.example", ""},
		{"PostNoOrigin", "POST", "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"email":"c%d@example.org"}`, i)
			hdr := []string{"Origin", tt.origin}
			if tt.method == "OPTIONS" {
				body = ""
				hdr = append(hdr, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
			}
			r := f.do(tt.method, "/subscribe", "application/json", body, hdr...)
			if got := r.header.Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.wantAllow)
			}
			if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Origin") {
				t.Error("no Vary: Origin")
			}
			if tt.method == "OPTIONS" {
				if r.status != 204 {
					t.Errorf("preflight status %d", r.status)
				}
				if tt.wantAllow != "" && (r.header.Get("Access-Control-Allow-Methods") != "POST" || !strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "Content-Type")) {
					t.Errorf("preflight headers %v", r.header)
				}
				if tt.wantAllow == "" && r.header.Get("Access-Control-Allow-Methods") != "" {
					t.Error("unlisted origin got Allow-Methods")
				}
			} else if r.status != 200 {
				t.Errorf("status %d", r.status)
			}
		})
	}
}

func TestSubscribePageLanguage(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	tests := []struct {
		name, query, acceptLanguage, wantLang, wantText string
	}{
		{"Default", "", "", "en", "every Monday at about 08:00 UTC"},
		{"AcceptRussian", "", "ru-RU,ru;q=0.9,en;q=0.5", "ru", "по понедельникам, около 08:00 UTC"},
		{"AcceptPreferenceOrder", "", "de-DE, en;q=0.8, ru;q=0.7", "en", "Email address"},
		{"AcceptUnknown", "", "de, fr", "en", "Subscribe"},
		{"QueryBeatsHeader", "?lang=ru", "en", "ru", "Подписаться"},
		{"UnknownQuery", "?lang=xx", "ru", "ru", "Адрес электронной почты"},
		{"MalformedHeader", "", ";;;q=x,", "en", "Subscribe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do("GET", "/"+tt.query, "", "", "Accept-Language", tt.acceptLanguage)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			if !strings.Contains(r.body, `<html lang="`+tt.wantLang+`">`) || !strings.Contains(r.body, tt.wantText) {
				t.Errorf("want lang %s with %q:\n%s", tt.wantLang, tt.wantText, r.body)
			}
			for _, want := range []string{"The Test Gazette", `<label for="email">`, `name="website"`, `aria-hidden="true"`, `tabindex="-1"`, `action="/subscribe"`} {
				if !strings.Contains(r.body, want) {
					t.Errorf("page lacks %s", want)
				}
			}
		})
	}
}

func TestRussianPagesAreRussian(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ru@example.org")
	if _, err := f.store.Update(context.Background(), s.UUID, "Аня", "ru"); err != nil {
		t.Fatal(err)
	}
	type page struct {
		name string
		r    response
	}
	var pages []page
	visit := func(name, method, path, contentType, body string, header ...string) {
		pages = append(pages, page{name, f.do(method, path, contentType, body, header...)})
	}
	visit("subscribe", "GET", "/?lang=ru", "", "")
	visit("accepted", "POST", "/subscribe", formType, form("email", "new@example.org", "lang", "ru"))
	visit("field error", "POST", "/subscribe", formType, form("email", "new@", "lang", "ru"))
	visit("wrong type", "POST", "/subscribe", "text/plain", "x", "Accept-Language", "ru")
	visit("invalid link", "GET", "/confirm/nonsense", "", "", "Accept-Language", "ru")
	visit("expired link", "GET", "/confirm/"+f.signer.Token(subscribers.PurposeConfirm, s.UUID, time.Now().Add(-8*24*time.Hour)), "", "", "Accept-Language", "ru")
	visit("confirm", "GET", "/confirm/"+f.token(subscribers.PurposeConfirm, s), "", "")
	visit("confirmed", "POST", "/confirm/"+f.token(subscribers.PurposeConfirm, s), formType, "")
	visit("manage", "GET", "/manage/"+f.token(subscribers.PurposeManage, s), "", "")
	visit("manage saved", "POST", "/manage/"+f.token(subscribers.PurposeManage, s), formType, form("name", "Аня", "lang", "ru"))
	visit("erase unticked", "POST", "/manage/"+f.token(subscribers.PurposeManage, s)+"/erase", formType, "")
	visit("unsubscribe", "GET", "/unsubscribe/"+f.token(subscribers.PurposeUnsubscribe, s), "", "")
	visit("unsubscribed", "POST", "/unsubscribe/"+f.token(subscribers.PurposeUnsubscribe, s), formType, "")
	visit("erased", "POST", "/manage/"+f.token(subscribers.PurposeManage, s)+"/erase", formType, form("confirm", "yes"))
	visit("gone", "GET", "/manage/"+f.token(subscribers.PurposeManage, s), "", "", "Accept-Language", "ru")
	// Visible text of a page: tags, entities and the few names and codes that stay as they are.
	tags := regexp.MustCompile(`(?s)<[^>]*>|&[a-z#0-9]+;`)
	latin := regexp.MustCompile(`[A-Za-z]{3,}`)
	allowed := map[string]bool{"The": true, "Test": true, "Gazette": true, "English": true, "UTC": true, "JSON": true, "name": true, "example": true, "com": true, "org": true}
	for _, p := range pages {
		if !strings.Contains(p.r.body, `<html lang="ru">`) {
			t.Errorf("%s page (%d) is not in Russian", p.name, p.r.status)
		}
		text := tags.ReplaceAllString(p.r.body, " ")
		for _, w := range latin.FindAllString(text, -1) {
			if !allowed[w] {
				t.Errorf("%s page in Russian shows the English word %q", p.name, w)
			}
		}
	}
}

func TestConfirm(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ann@example.org")
	tok := f.token(subscribers.PurposeConfirm, s)

	page := f.do("GET", "/confirm/"+tok, "", "")
	if page.status != 200 || !strings.Contains(page.body, `method="post" action="/confirm/`+tok+`"`) {
		t.Fatalf("confirm page %d:\n%s", page.status, page.body)
	}
	if got := strings.Count(page.body, "<button"); got != 1 {
		t.Errorf("%d buttons, want one", got)
	}
	tokenHeaders(t, page)
	if got := f.reload(s).Status; got != subscribers.StatusPending {
		t.Fatalf("GET changed the status to %s", got)
	}
	for i := range 2 { // twice is harmless
		r := f.do("POST", "/confirm/"+tok, formType, "")
		if r.status != 200 || !strings.Contains(r.body, "You are subscribed") {
			t.Fatalf("POST %d: %d\n%s", i, r.status, r.body)
		}
		tokenHeaders(t, r)
		clean(t, r, f.token(subscribers.PurposeManage, s), f.token(subscribers.PurposeUnsubscribe, s))
		if got := f.reload(s); got.Status != subscribers.StatusConfirmed || got.ConfirmedAt == nil {
			t.Fatalf("after POST %d: %s, confirmed_at %v", i, got.Status, got.ConfirmedAt)
		}
	}
	if got := testutil.ToFloat64(f.h.confirmations); got != 1 {
		t.Errorf("confirmations counter = %v, want 1", got)
	}
	if r := f.do("GET", "/confirm/"+tok, "", ""); r.status != 200 || strings.Contains(r.body, "<button") {
		t.Errorf("GET after confirming: %d, want a page without a button", r.status)
	}
}

func tokenHeaders(t *testing.T, r response) {
	t.Helper()
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("token page headers: Cache-Control %q, Referrer-Policy %q", r.header.Get("Cache-Control"), r.header.Get("Referrer-Policy"))
	}
}

func TestBadTokens(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	ann := f.subscribed("ann@example.org")
	bob := f.subscribed("bob@example.org")
	good := f.token(subscribers.PurposeConfirm, ann)
	altered := []byte(good)
	altered[10] ^= 1
	if altered[10] == '-' || altered[10] == '_' || altered[10] > 'z' {
		altered[10] = 'A'
	}
	otherKey := subscribers.NewSigner([]byte("not-the-service-secret-0000"))
	tests := []struct {
		name       string
		path       string
		wantStatus int
	}{
		{"Garbage", "/confirm/hello", 404},
		{"Empty-ish", "/confirm/%20", 404},
		{"Altered", "/confirm/" + string(altered), 404},
		{"Truncated", "/confirm/" + good[:len(good)-2], 404},
		{"Extended", "/confirm/" + good + "AA", 404},
		{"ForgedForBob", "/confirm/" + otherKey.Token(subscribers.PurposeConfirm, bob.UUID, time.Now()), 404},
		{"UnsubscribeTokenAtConfirm", "/confirm/" + f.token(subscribers.PurposeUnsubscribe, ann), 404},
		{"ManageTokenAtConfirm", "/confirm/" + f.token(subscribers.PurposeManage, ann), 404},
		{"ConfirmTokenAtUnsubscribe", "/unsubscribe/" + good, 404},
		{"ConfirmTokenAtManage", "/manage/" + good, 404},
		{"ForgedUnsubscribe", "/unsubscribe/" + otherKey.Token(subscribers.PurposeUnsubscribe, bob.UUID, time.Now()), 404},
		{"ForgedManage", "/manage/" + otherKey.Token(subscribers.PurposeManage, bob.UUID, time.Now()), 404},
		{"ForgedErase", "/manage/" + otherKey.Token(subscribers.PurposeManage, bob.UUID, time.Now()) + "/erase", 404},
		{"ForgedData", "/manage/" + otherKey.Token(subscribers.PurposeManage, bob.UUID, time.Now()) + "/data.json", 404},
		{"Expired", "/confirm/" + f.signer.Token(subscribers.PurposeConfirm, ann.UUID, time.Now().Add(-8*24*time.Hour)), 410},
		{"UnknownReader", "/unsubscribe/" + f.signer.Token(subscribers.PurposeUnsubscribe, "6f1c2b8e-3f57-4e7a-9d0c-5a1b2c3d4e5f", time.Now()), 410},
		{"IssueUnsubscribeTokenAtConfirm", "/confirm/" + f.issueToken(ann, 7), 404},
		{"IssueUnsubscribeTokenAtManage", "/manage/" + f.issueToken(ann, 7), 404},
		{"ForgedIssueUnsubscribe", "/unsubscribe/" + otherKey.Token(subscribers.PurposeIssueUnsubscribe, bob.UUID, time.UnixMicro(7)), 404},
		{"IssueZeroUnsubscribe", "/unsubscribe/" + f.signer.Token(subscribers.PurposeIssueUnsubscribe, bob.UUID, time.UnixMicro(0)), 404},
		{"NewsletterUnsubscribeTokenAtConfirm", "/confirm/" + f.signer.Token(subscribers.PurposeNewsletterUnsubscribe, ann.UUID, time.UnixMicro(1)), 404},
		{"NewsletterUnsubscribeTokenAtManage", "/manage/" + f.signer.Token(subscribers.PurposeNewsletterUnsubscribe, ann.UUID, time.UnixMicro(1)), 404},
		{"ForgedNewsletterUnsubscribe", "/unsubscribe/" + otherKey.Token(subscribers.PurposeNewsletterUnsubscribe, bob.UUID, time.UnixMicro(1)), 404},
		{"NewsletterZeroUnsubscribe", "/unsubscribe/" + f.signer.Token(subscribers.PurposeNewsletterUnsubscribe, bob.UUID, time.UnixMicro(0)), 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			methods := []string{"GET", "POST"}
			if strings.HasSuffix(tt.path, "/erase") {
				methods = []string{"POST"}
			} else if strings.HasSuffix(tt.path, "/data.json") {
				methods = []string{"GET"}
			}
			for _, m := range methods {
				body := ""
				if m == "POST" {
					body = form("confirm", "yes", "name", "Mallory", "lang", "ru")
				}
				r := f.do(m, tt.path, formType, body)
				if r.status != tt.wantStatus {
					t.Errorf("%s: status %d, want %d", m, r.status, tt.wantStatus)
				}
				tokenHeaders(t, r)
				clean(t, r, strings.Split(tt.path, "/")[2], good)
			}
			for _, s := range []subscribers.Subscriber{ann, bob} {
				if got := f.reload(s); got.Status != subscribers.StatusPending || got.Name != "Reader" || got.Lang != "en" {
					t.Errorf("%s changed: %+v", s.Email, got)
				}
			}
		})
	}
}

func TestConfirmAfterLeaving(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ann@example.org")
	tok := f.token(subscribers.PurposeConfirm, s)
	if _, err := f.store.Unsubscribe(context.Background(), s.UUID); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "POST"} {
		if r := f.do(m, "/confirm/"+tok, formType, ""); r.status != 410 {
			t.Errorf("%s of an old confirm link after unsubscribing: %d, want 410", m, r.status)
		}
	}
	if got := f.reload(s).Status; got != subscribers.StatusUnsubscribed {
		t.Errorf("status %s, want unsubscribed", got)
	}
}

func TestUnsubscribe(t *testing.T) {
	tests := []struct {
		name, contentType, body string
	}{
		{"OneClick", formType, "List-Unsubscribe=One-Click"},
		{"Button", formType, ""},
		{"NoBody", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newWebFixture(t, HandlerOptions{})
			s := f.subscribed("ann@example.org")
			f.store.Confirm(context.Background(), s.UUID, time.Now())
			tok := f.token(subscribers.PurposeUnsubscribe, s)

			page := f.do("GET", "/unsubscribe/"+tok, "", "")
			if page.status != 200 || strings.Count(page.body, "<button") != 1 || !strings.Contains(page.body, `method="post" action="/unsubscribe/`+tok+`"`) {
				t.Fatalf("unsubscribe page %d:\n%s", page.status, page.body)
			}
			if !strings.Contains(page.body, "a…@example.org") || strings.Contains(page.body, "ann@example.org") {
				t.Error("the page should show the address masked")
			}
			tokenHeaders(t, page)
			if got := f.reload(s).Status; got != subscribers.StatusConfirmed {
				t.Fatalf("GET changed the status to %s", got)
			}
			for i := range 2 {
				r := f.do("POST", "/unsubscribe/"+tok, tt.contentType, tt.body)
				if r.status != 200 {
					t.Fatalf("POST %d: %d\n%s", i, r.status, r.body)
				}
				if r.header.Get("Set-Cookie") != "" {
					t.Error("unsubscribe sets a cookie")
				}
				clean(t, r, tok)
				if got := f.reload(s).Status; got != subscribers.StatusUnsubscribed {
					t.Fatalf("after POST %d: %s", i, got)
				}
			}
			if got := testutil.ToFloat64(f.h.unsubscribes); got != 1 {
				t.Errorf("unsubscribes counter = %v, want 1", got)
			}
		})
	}
}

// issueToken is the token of the unsubscribe link in issue's copy to s.
func (f *webFixture) issueToken(s subscribers.Subscriber, issue int64) string {
	return strings.TrimPrefix(f.signer.IssueUnsubscribeURL("", s.UUID, issue), "/unsubscribe/")
}

// The unsubscribe link of one issue's copy unsubscribes like any other, one-click included, and
// the departure is kept as an event of that issue, once.
func TestUnsubscribeThroughIssueLink(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ann@example.org")
	f.store.Confirm(context.Background(), s.UUID, time.Now())
	var issue int64
	if err := f.db.Get(&issue, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'sent') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	tok := f.issueToken(s, issue)
	if page := f.do("GET", "/unsubscribe/"+tok, "", ""); page.status != 200 || !strings.Contains(page.body, `action="/unsubscribe/`+tok+`"`) {
		t.Fatalf("unsubscribe page %d:\n%s", page.status, page.body)
	}
	for i := range 2 {
		if r := f.do("POST", "/unsubscribe/"+tok, formType, "List-Unsubscribe=One-Click"); r.status != 200 {
			t.Fatalf("POST %d: %d\n%s", i, r.status, r.body)
		}
	}
	if got := f.reload(s).Status; got != subscribers.StatusUnsubscribed {
		t.Fatalf("status %s, want unsubscribed", got)
	}
	var events []int64
	if err := f.db.Select(&events, `SELECT issue_id FROM reader_events WHERE kind = 'unsubscribe'`); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0] != issue {
		t.Errorf("unsubscribe events for issues %v, want one for %d", events, issue)
	}
}

func TestUnsubscribeBodyTooLarge(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ann@example.org")
	r := f.do("POST", "/unsubscribe/"+f.token(subscribers.PurposeUnsubscribe, s), formType, strings.Repeat("x", 70<<10))
	if r.status != 413 {
		t.Errorf("status %d, want 413", r.status)
	}
	if got := f.reload(s).Status; got != subscribers.StatusPending {
		t.Errorf("status %s, want pending", got)
	}
}

func TestManage(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	s := f.subscribed("ann@example.org")
	other := f.subscribed("bob@example.org")
	tok := f.token(subscribers.PurposeManage, s)
	base := "/manage/" + tok

	page := f.do("GET", base, "", "")
	if page.status != 200 {
		t.Fatalf("manage page %d", page.status)
	}
	for _, want := range []string{"ann@example.org", `value="Reader"`, `action="` + base + `/data.json"`, `action="` + base + `/erase"`, `name="confirm"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("manage page lacks %s", want)
		}
	}
	tokenHeaders(t, page)

	t.Run("BadUpdates", func(t *testing.T) {
		for name, body := range map[string]string{
			"UnknownLang": form("name", "Ann", "lang", "de"),
			"LongName":    form("name", strings.Repeat("n", 101), "lang", "en"),
			"CRLFName":    form("name", "Ann\r\nX", "lang", "en"),
		} {
			if r := f.do("POST", base, formType, body); r.status != 400 {
				t.Errorf("%s: status %d, want 400", name, r.status)
			}
		}
		if r := f.do("POST", base, "text/plain", "name=x"); r.status != 415 {
			t.Errorf("text/plain: status %d, want 415", r.status)
		}
		if got := f.reload(s); got.Name != "Reader" || got.Lang != "en" {
			t.Errorf("a bad update changed the reader: %+v", got)
		}
	})

	r := f.do("POST", base, formType, form("name", "  Анна  ", "lang", "ru"))
	if r.status != 200 || !strings.Contains(r.body, `<html lang="ru">`) || !strings.Contains(r.body, "Настройки сохранены") {
		t.Fatalf("update: %d\n%s", r.status, r.body)
	}
	if got := f.reload(s); got.Name != "Анна" || got.Lang != "ru" {
		t.Errorf("after update: %+v", got)
	}

	data := f.do("GET", base+"/data.json", "", "")
	if data.status != 200 || !strings.HasPrefix(data.header.Get("Content-Disposition"), "attachment") || !strings.HasPrefix(data.header.Get("Content-Type"), "application/json") {
		t.Fatalf("data: %d %v", data.status, data.header)
	}
	if !json.Valid([]byte(data.body)) || !strings.Contains(data.body, "ann@example.org") || strings.Contains(data.body, "bob@example.org") {
		t.Errorf("data export:\n%s", data.body)
	}
	clean(t, data, tok)

	if r := f.do("POST", base+"/erase", formType, ""); r.status != 400 {
		t.Errorf("erase without the box ticked: %d, want 400", r.status)
	}
	if f.reload(s).Email != "ann@example.org" {
		t.Fatal("erased without consent")
	}
	if r := f.do("POST", base+"/erase", formType, form("confirm", "yes")); r.status != 200 {
		t.Fatalf("erase: %d\n%s", r.status, r.body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", base}, {"POST", base}, {"GET", base + "/data.json"}, {"POST", base + "/erase"},
		{"GET", "/unsubscribe/" + f.token(subscribers.PurposeUnsubscribe, s)}, {"POST", "/confirm/" + f.token(subscribers.PurposeConfirm, s)},
	} {
		r := f.do(c.method, c.path, formType, form("confirm", "yes", "name", "X", "lang", "en"))
		if r.status != 404 && r.status != 410 {
			t.Errorf("%s %s after erase: %d, want 404 or 410", c.method, strings.Replace(c.path, tok, "TOKEN", 1), r.status)
		}
		if strings.Contains(r.body, "ann@example.org") {
			t.Error("erased address shown")
		}
	}
	var n int
	f.db.Get(&n, "SELECT count(*) FROM subscribers WHERE lower(email) = 'ann@example.org'")
	if n != 0 {
		t.Error("the address is still stored after erase")
	}
	if f.reload(other).Email != "bob@example.org" {
		t.Error("erase touched another reader")
	}
}

func TestDescribeSchedule(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	tests := []struct{ spec, lang, want string }{
		{"CRON_TZ=UTC 0 8 * * MON", "en", "every Monday at about 08:00 UTC"},
		{"CRON_TZ=UTC 0 8 * * MON", "ru", "по понедельникам, около 08:00 UTC"},
		{"CRON_TZ=Europe/Moscow 30 9 * * FRI", "en", "every Friday at about 09:30 Europe/Moscow"},
		{"@weekly", "en", "every Sunday at about 00:00 UTC"},
		{"0 7 * * *", "en", "every day at about 07:00 UTC"},
		{"0 8 1 * *", "en", "regularly, when there is news worth your time"},
		{"0 8 * * MON,THU", "en", "regularly, when there is news worth your time"},
		{"not a spec", "en", "regularly, when there is news worth your time"},
	}
	for _, tt := range tests {
		f.h.sched = describeSchedule(tt.spec)
		if got := f.h.cadence(tt.lang); got != tt.want {
			t.Errorf("%q in %s: %q, want %q", tt.spec, tt.lang, got, tt.want)
		}
	}
}

// FuzzSubscribeInput feeds arbitrary bodies through decoding and validation: nothing may panic, and
// whatever passes carries no header-breaking character and fits the schema.
func FuzzSubscribeInput(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{formType, form("email", "ann@example.org", "name", "Ann", "lang", "en")},
		{formType, "email=a%0d%0aBcc:x@example.org"},
		{"application/json", `{"email":"ann@example.org","name":"Аня","lang":"ru"}`},
		{"application/json", `{"email":"a@b.c\u0000"}`},
		{"application/json", `[1,2]`},
		{"multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nann@example.org\r\n--X--\r\n"},
		{"text/plain", "hello"},
	} {
		f.Add(seed.ct, seed.body)
	}
	h := &Handler{opts: HandlerOptions{Languages: []string{"en", "ru"}}}
	f.Fuzz(func(t *testing.T, ct, body string) {
		r := httptest.NewRequest("POST", "/subscribe", strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		in, err := decodeSubscribe(httptest.NewRecorder(), r)
		if err != nil {
			return
		}
		email, name, lang, err := h.validate(in, "en")
		if err != nil {
			var fe *subscribers.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("validation error %v is not a FieldError", err)
			}
			return
		}
		for _, v := range []string{email, name, lang} {
			if strings.ContainsAny(v, "\r\n\x00") || !utf8.ValidString(v) {
				t.Fatalf("accepted %q", v)
			}
		}
		if utf8.RuneCountInString(email) > 254 || utf8.RuneCountInString(name) > 100 || !h.hasLang(lang) {
			t.Fatalf("accepted email %q name %q lang %q", email, name, lang)
		}
	})
}

// BenchmarkSubscribe measures one accepted form POST end to end through the handler and PostgreSQL
// (reader, consent and queued confirmation in one transaction), each with a new address.
func BenchmarkSubscribe(b *testing.B) {
	db := testdb.New(b)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		b.Fatal(err)
	}
	pages, err := templates.ParsePages(fsys, cat)
	if err != nil {
		b.Fatal(err)
	}
	h := NewHandler(subscribers.NewStore(db, testSecret), subscribers.NewSigner(testSecret), pages, cat, nil, HandlerOptions{Languages: []string{"en", "ru"}}, nil, nil)
	for i := 0; b.Loop(); i++ {
		r := httptest.NewRequest("POST", "/subscribe", strings.NewReader(form("email", fmt.Sprintf("bench%d@example.org", i), "lang", "en")))
		r.Header.Set("Content-Type", formType)
		w := httptest.NewRecorder()
		h.Subscribe(w, r)
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
