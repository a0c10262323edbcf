package main

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/feeds"
	"newsletter/digest/render"
	digestweb "newsletter/digest/web"
	"newsletter/editors"
	"newsletter/subscribers"
	readerweb "newsletter/subscribers/web"
	"newsletter/templates"
)

// build constructs every store, handler and worker of serve and returns the route table.
func (a *App) build(ctx context.Context) (http.Handler, []worker, error) {
	var workers []worker
	a.load = &requestLoad{}
	mux := http.NewServeMux()

	// --- service ---
	static, _ := fs.Sub(templates.FS(a.cfg.TemplatesDir), "page/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))

	// --- subscribers ---
	subStore := subscribers.NewStore(a.db, a.secret)
	signer := subscribers.NewSigner(a.secret)
	// confirmation mailer
	// Its connections live for one batch: no NOOP before each message (a round trip per email).
	confirmClient, err := a.mailClient(mail.WithoutNoop())
	if err != nil {
		return nil, nil, err
	}
	dkim, err := a.dkimSigner()
	if err != nil {
		return nil, nil, err
	}
	welcomeRenderer, err := a.digestRenderer()
	if err != nil {
		return nil, nil, err
	}
	mailer, err := subscribers.NewMailer(subStore, confirmClient, signer, templates.FS(a.cfg.TemplatesDir), a.catalog, subscribers.MailerOptions{
		BaseURL: a.cfg.BaseURL, From: a.cfg.From, Publication: a.cfg.Publication, DKIM: dkim, BounceAddress: a.cfg.BounceAddress,
		Yield: func() bool { return subStore.Busy() || a.load.busy() },
		// A welcome is rendered as an edition: the digest's header and footer around its Markdown.
		Welcome: func(w subscribers.WelcomeEmail) (string, string, string, error) {
			out, err := welcomeRenderer.RenderEdition(digest.Edition{Lang: w.Lang, Newsletter: w.Newsletter, Subject: w.Subject,
				Markdown: w.Markdown, Date: time.Now()}, render.Recipient{ManageURL: w.ManageURL, UnsubscribeURL: w.UnsubscribeURL})
			return out.Subject, out.HTML, out.Text, err
		},
	}, a.log, a.registry)
	if err != nil {
		return nil, nil, err
	}
	workers = append(workers, worker{name: "confirmation mailer", run: mailer.Run})
	expiry, err := subscribers.NewExpiry(subStore, a.cfg.UnconfirmedExpiry, time.Hour, a.log, a.registry)
	if err != nil {
		return nil, nil, err
	}
	workers = append(workers, worker{name: "unconfirmed expiry", run: expiry.Run})
	var wake interface{ Wake() } = mailer
	subs := readerweb.NewHandler(subStore, signer, a.pages, a.catalog, wake, readerweb.HandlerOptions{
		Publication: a.cfg.Publication, Languages: a.cfg.Languages, Schedule: a.cfg.DigestSchedule,
		CORSOrigins: a.cfg.CORSOrigins, RateLimit: a.cfg.SubscribeRateLimit, TrustProxy: a.cfg.TrustProxy, ConsentIP: a.cfg.ConsentIP,
	}, a.log, a.registry)
	mux.HandleFunc("GET /{$}", subs.SubscribePage)
	mux.HandleFunc("GET /subscribe", subs.SubscribePage) // a reload or bookmark of the form's result
	mux.HandleFunc("POST /subscribe", subs.Subscribe)
	mux.HandleFunc("OPTIONS /subscribe", subs.Preflight)
	mux.HandleFunc("GET /confirm/{token}", subs.ConfirmPage)
	mux.HandleFunc("POST /confirm/{token}", subs.Confirm)
	mux.HandleFunc("GET /unsubscribe/{token}", subs.UnsubscribePage)
	mux.HandleFunc("POST /unsubscribe/{token}", subs.Unsubscribe)
	mux.HandleFunc("GET /manage/{token}", subs.ManagePage)
	mux.HandleFunc("POST /manage/{token}", subs.Manage)
	mux.HandleFunc("GET /manage/{token}/data.json", subs.Data)
	mux.HandleFunc("POST /manage/{token}/erase", subs.Erase)
	// bounces and complaints (bounces.go): the mailbox, and each provider's webhook only where it
	// is set up; signed by the provider, so no session or form token
	if w, err := a.bounceMailbox(subStore, signer); err != nil {
		return nil, nil, err
	} else if w != nil {
		workers = append(workers, *w)
	}
	if h := a.sesWebhook(subStore); h != nil {
		mux.Handle("POST /webhooks/ses", h)
	}
	if h := a.mailgunWebhook(subStore); h != nil {
		mux.Handle("POST /webhooks/mailgun", h)
	}

	// --- digest ---
	// One store and one ingester serve every digest part below: the poller, the editor pages and
	// the schedule's poll before assembly.
	digestStore, err := a.digestStore()
	if err != nil {
		return nil, nil, err
	}
	var ingester *feeds.Ingester
	// feeds
	if len(a.cfg.Feeds) > 0 {
		ingester = a.ingester(false)
		workers = append(workers, worker{name: "feed poller", run: func(ctx context.Context) error {
			return pollFeeds(ctx, ingester, a.cfg.FeedSchedule, a.log)
		}})
	} else if a.cfg.Demo {
		n, err := digestStore.SeedDemo(ctx, a.cfg.Languages)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			a.log.Info("demo articles seeded: no feed is configured and there were no articles", "articles", n)
		}
	}
	// archive
	digestRenderer, err := a.digestRenderer()
	if err != nil {
		return nil, nil, err
	}
	archive := digestweb.NewArchive(digestStore, digestRenderer, a.pages, a.catalog, digestweb.ArchiveOptions{
		BaseURL: a.cfg.BaseURL, Publication: a.cfg.Publication, Languages: a.cfg.Languages, MaxArticles: a.cfg.DigestMaxArticles,
	}, a.log)
	mux.HandleFunc("GET /archive", archive.List)
	mux.HandleFunc("GET /archive/{id}", archive.Issue)
	mux.HandleFunc("GET /archive/editions/{id}", archive.Edition)
	mux.HandleFunc("GET /archive.xml", archive.Feed)
	// editor pages: every one but the login form and the login itself behind RequireEditor
	sender, err := a.newSender(digestStore) // also runs below, as the "digest sender" worker
	if err != nil {
		return nil, nil, err
	}
	editor := digestweb.NewEditor(digestStore, a.editorStore(), digestRenderer, a.pages, digestweb.EditorOptions{
		Publication: a.cfg.Publication, Languages: a.cfg.Languages, MaxArticles: a.cfg.DigestMaxArticles, BaseURL: a.cfg.BaseURL,
		RequireApproval: a.cfg.RequireApproval, DigestSchedule: a.cfg.DigestSchedule, Timezone: a.cfg.Timezone, SecureCookies: strings.HasPrefix(a.cfg.BaseURL, "https://"),
		TrustProxy: a.cfg.TrustProxy, DeviceKey: a.secret, AdminTOTPRequired: a.cfg.AdminTOTPRequired, Device: subscribers.ReduceUserAgent,
		TestSend: sender.SendTest, StartSend: sender.Start, Readers: readerList{store: subStore, wake: mailer},
	}, a.log)
	for _, rt := range editorRoutes(editor) {
		if rt.role == public {
			mux.HandleFunc(rt.pattern, rt.handler)
		} else {
			mux.Handle(rt.pattern, editor.Require(rt.role, rt.handler))
		}
	}

	// sending
	var pollBeforeDigest func(context.Context)
	if ingester != nil {
		pollBeforeDigest = func(ctx context.Context) { ingester.PollAll(ctx) }
	}
	scheduler, err := digest.NewScheduler(digestStore, sender, pollBeforeDigest, digest.ScheduleOptions{
		Spec: a.cfg.DigestSchedule, Languages: a.cfg.Languages, MaxArticles: a.cfg.DigestMaxArticles,
		RequireApproval: a.cfg.RequireApproval, MaxLateness: a.cfg.MaxLateness, Location: a.cfg.Timezone,
	}, a.log)
	if err != nil {
		return nil, nil, err
	}
	workers = append(workers, worker{name: "digest sender", run: sender.Run}, worker{name: "digest schedule", run: scheduler.Run},
		// Approved editions start at their scheduled time; checked every half-minute.
		worker{name: "edition schedule", run: func(ctx context.Context) error {
			return sender.RunEditionSchedule(ctx, a.cfg.MaxLateness, 30*time.Second)
		}})

	return a.middleware(mux), workers, nil
}

// public marks an editor route that needs no login (the login itself, a set-password link).
const public editors.Role = 0

// adminRoute is one editor route: its pattern and the least role that may use it.
type adminRoute struct {
	pattern string
	role    editors.Role
	handler http.HandlerFunc
}

// editorRoutes lists every /admin route once, with the least role that may use it; build
// registers each behind Require with that role. Writers edit and test, publishers also send,
// admins also have the readers, the editors and the audit log. TestAdminRoleWalk walks them all.
func editorRoutes(ed *digestweb.Editor) []adminRoute {
	w, p, a := editors.Writer, editors.Publisher, editors.Admin
	return []adminRoute{
		{"GET /admin/login", public, ed.LoginForm},
		{"POST /admin/login", public, ed.Login},
		{"GET /admin/login/code", public, ed.CodeForm}, // a session waiting for its TOTP code
		{"POST /admin/login/code", public, ed.Code},
		{"GET /admin/setup/{token}", public, ed.SetPasswordForm}, // the one-time link is the credential
		{"POST /admin/setup/{token}", public, ed.SetPassword},
		{"POST /admin/logout", w, ed.Logout},
		// the digest
		{"GET /admin/{$}", w, ed.Home},
		{"GET /admin/digest/{lang}", w, ed.Digest},
		{"GET /admin/digest/{lang}/articles/new", w, ed.NewArticleForm},
		{"POST /admin/digest/{lang}/articles", w, ed.AddArticle},
		{"GET /admin/articles/{id}/edit", w, ed.EditArticleForm},
		{"POST /admin/articles/{id}", w, ed.EditArticle},
		{"POST /admin/articles/{id}/{action}", w, ed.ArticleAction}, // pin unpin hide unhide up down pick
		{"GET /admin/issues/{id}", w, ed.IssuePage},
		{"GET /admin/issues/{id}/preview.html", w, ed.Preview},
		{"POST /admin/issues/{id}/text", w, ed.IssueText},
		{"POST /admin/issues/{id}/test", w, ed.TestSend}, // a writer: to their own address only
		{"POST /admin/issues/{id}/approve", p, ed.Approve},
		{"POST /admin/issues/{id}/{action}", p, ed.IssueAction}, // pause resume cancel send
		// editions: written by writers, approved, scheduled and sent by publishers
		{"GET /admin/editions", w, ed.Editions},
		{"POST /admin/editions", w, ed.NewEdition},
		{"GET /admin/editions/{id}", w, ed.EditionPage},
		{"POST /admin/editions/{id}", w, ed.SaveEdition},
		{"POST /admin/editions/{id}/schedule", p, ed.ScheduleEdition},
		// my account
		{"GET /admin/account", w, ed.Account},
		{"POST /admin/account/name", w, ed.AccountName},
		{"POST /admin/account/password", w, ed.AccountPassword},
		{"GET /admin/account/totp", w, ed.TOTPPage},
		{"POST /admin/account/totp", w, ed.TOTPOn},
		{"POST /admin/account/totp/off", w, ed.TOTPOff},
		{"POST /admin/account/sessions/{sid}/end", w, ed.EndMySession},
		{"POST /admin/account/logout-everywhere", w, ed.LogoutEverywhere},
		// the readers' pages: a reader is found by exact address in a POST and named by uuid after
		{"GET /admin/readers", a, ed.Readers},
		{"POST /admin/readers/lookup", a, ed.ReaderLookup},
		{"GET /admin/readers/{uuid}", a, ed.ReaderPage},
		{"GET /admin/readers/{uuid}/{action}", a, ed.ReaderConfirm}, // the confirm step of unsubscribe and erase
		{"POST /admin/readers/{uuid}/{action}", a, ed.ReaderAction}, // unsubscribe erase resend lang
		// the editors and the audit log
		{"GET /admin/editors", a, ed.Editors},
		{"POST /admin/editors", a, ed.Invite},
		{"GET /admin/editors/{id}", a, ed.EditorPage},
		{"POST /admin/editors/{id}/{action}", a, ed.EditorAction}, // role disable enable reset delete logout
		{"POST /admin/editors/{id}/sessions/{sid}/end", a, ed.EndEditorSession},
		{"GET /admin/audit", a, ed.Audit},
		// the newsletters and the digests' schedules: writers look, publishers change
		{"GET /admin/newsletters", w, ed.Newsletters},
		{"POST /admin/newsletters", p, ed.CreateNewsletter},
		{"GET /admin/newsletters/{id}", w, ed.NewsletterPage},
		{"POST /admin/newsletters/{id}", p, ed.EditNewsletter},
		{"POST /admin/newsletters/{id}/welcome/{lang}", p, ed.SaveWelcome},
		{"GET /admin/newsletters/{id}/welcome/{lang}/preview.html", w, ed.WelcomePreview},
		{"GET /admin/newsletters/{id}/schedule", w, ed.SchedulePage},
		{"POST /admin/newsletters/{id}/schedule", p, ed.SaveSchedule},
		{"POST /admin/newsletters/{id}/schedule/{action}", p, ed.ScheduleAction}, // skip unskip
	}
}

func (a *App) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.db.PingContext(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("database unavailable\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// middleware wraps every route: a panic becomes a plain 500 (logged, never shown), and each request
// is logged without its query string, which may carry a signed token.
func (a *App) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		a.load.enter()
		defer a.load.leave()
		securityHeaders(w.Header(), a.cfg.BaseURL)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if v := recover(); v != nil {
				a.log.Error("panic", "method", r.Method, "path", routeLabel(r), "panic", v, "stack", string(debug.Stack()))
				http.Error(rec, "Internal error.", http.StatusInternalServerError)
			}
			a.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("method", r.Method), slog.String("route", routeLabel(r)),
				slog.Int("status", rec.status), slog.Duration("took", time.Since(start)))
		}()
		next.ServeHTTP(rec, r)
	})
}

// securityHeaders sets the defaults every response carries. A handler that needs another policy
// (the archive copy of an email, the editors' preview frame) sets its own, which replaces these.
func securityHeaders(h http.Header, baseURL string) {
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'none'; object-src 'none'; img-src 'self' https: data:; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if strings.HasPrefix(baseURL, "https://") {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// routeLabel names the matched route pattern rather than the raw path, so signed tokens in paths
// never reach a log line.
func routeLabel(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return "(unmatched)"
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int)        { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// requestLoad counts the requests in flight. Background work that competes with them for the CPU
// and the database (the confirmation mailer) asks busy, and makes way while many are being served.
type requestLoad struct {
	inflight atomic.Int64
	lastBusy atomic.Int64 // unix nanoseconds when busyRequests were last in flight at once
}

// busyRequests in flight at once mean the service is under load: a few per core. Ordinary traffic
// rarely holds more than one or two.
var busyRequests = int64(max(4, 2*runtime.NumCPU()))

func (l *requestLoad) enter() {
	if l.inflight.Add(1) >= busyRequests {
		l.lastBusy.Store(time.Now().UnixNano())
	}
}

func (l *requestLoad) leave() { l.inflight.Add(-1) }

// busy reports whether the service was under load within the last 100 ms.
func (l *requestLoad) busy() bool {
	return time.Now().UnixNano()-l.lastBusy.Load() < int64(100*time.Millisecond)
}
