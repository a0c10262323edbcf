package editors

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"newsletter/internal/testdb"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const pw = "correct horse battery staple"

func newTestStore(t *testing.T, opts Options) (*Store, *clock) {
	t.Helper()
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	if opts.Now == nil {
		opts.Now = c.now
	}
	return NewStore(testdb.New(t), []byte("editors-test-secret-0123456789abcdef"), opts), c
}

// active adds an editor with role and password pw.
func active(t *testing.T, s *Store, email string, role Role) Editor {
	t.Helper()
	_, link, err := s.Add(context.Background(), email, "", role)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := s.UseLink(context.Background(), link.Token, pw)
	if err != nil {
		t.Fatal(err)
	}
	return ed
}

func TestLinks(t *testing.T) {
	s, c := newTestStore(t, Options{})
	ctx := context.Background()
	ed, link, err := s.Add(ctx, " Ann@Example.org ", "Ann", Writer)
	if err != nil {
		t.Fatal(err)
	}
	if ed.Email != "ann@example.org" || ed.State() != "invited" || len(link.Token) != 43 {
		t.Fatalf("added %+v, link %+v", ed, link)
	}
	if _, _, err := s.Add(ctx, "ann@example.org", "", Admin); !errors.Is(err, ErrExists) {
		t.Errorf("the same address again: %v, want ErrExists", err)
	}
	var stored []byte
	s.db.Get(&stored, `SELECT token_hash FROM editor_links`)
	if strings.Contains(string(stored), link.Token) {
		t.Error("the link's token is stored as it is")
	}
	if _, err := s.UseLink(ctx, link.Token, "short"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a short password: %v, want ErrInvalid", err)
	}
	if _, err := s.UseLink(ctx, link.Token, pw); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := s.UseLink(ctx, link.Token, pw+"2"); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("second use: %v, want ErrLinkExpired", err)
	}
	_, reset, err := s.Reset(ctx, ed.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.add(LinkTTL + time.Second)
	if _, _, err := s.LinkEditor(ctx, reset.Token); !errors.Is(err, ErrLinkExpired) {
		t.Errorf("an expired link: %v, want ErrLinkExpired", err)
	}
	// Of many uses at once, one sets the password.
	_, again, _ := s.Reset(ctx, ed.ID)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		wg.Go(func() {
			if _, err := s.UseLink(ctx, again.Token, pw); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Errorf("%d concurrent uses of one link succeeded, want 1", ok)
	}
}

// TestSessionEpoch: a change of password or TOTP, disabling, a reset, deleting and "log out
// everywhere" each end every session of the editor, and only theirs.
func TestSessionEpoch(t *testing.T) {
	s, c := newTestStore(t, Options{})
	ctx := context.Background()
	ann := active(t, s, "ann@example.org", Admin)
	bob := active(t, s, "bob@example.org", Writer)
	start := func(ed Editor) string {
		t.Helper()
		ed, err := s.Get(ctx, ed.ID)
		if err != nil {
			t.Fatal(err)
		}
		cookie, err := s.StartSession(ctx, ed, StageFull, "", "192.0.2.1", "Firefox 128")
		if err != nil {
			t.Fatal(err)
		}
		return cookie
	}
	live := func(cookie string) bool { _, err := s.Session(ctx, cookie, ""); return err == nil }
	for _, step := range []struct {
		name   string
		change func() error
	}{
		{"ChangePassword", func() error { _, err := s.ChangePassword(ctx, "192.0.2.1", bob.ID, pw, pw+" new"); return err }},
		{"EndAll", func() error { return s.EndAllSessions(ctx, bob.ID) }},
		{"TOTPOn", func() error {
			setup, err := s.BeginTOTP(ctx, bob.ID)
			if err != nil {
				return err
			}
			_, err = s.ConfirmTOTP(ctx, bob.ID, TOTPCode(setup.Secret, c.now()))
			return err
		}},
		{"TOTPOff", func() error { _, err := s.DisableTOTP(ctx, "192.0.2.1", bob.ID, pw+" new"); return err }},
		{"Disable", func() error { _, err := s.Disable(ctx, bob.ID); return err }},
	} {
		t.Run(step.name, func(t *testing.T) {
			b1, b2, a := start(bob), start(bob), start(ann)
			if step.name == "Disable" {
				defer s.Enable(ctx, bob.ID)
			}
			if err := step.change(); err != nil {
				t.Fatal(err)
			}
			if live(b1) || live(b2) {
				t.Error("a session of the editor outlived the change")
			}
			if !live(a) {
				t.Error("another editor's session ended too")
			}
		})
	}
	// A session read before the change but started after it is dead on arrival.
	stale, _ := s.Get(ctx, ann.ID)
	if err := s.EndAllSessions(ctx, ann.ID); err != nil {
		t.Fatal(err)
	}
	cookie, _ := s.StartSession(ctx, stale, StageFull, "", "", "")
	if live(cookie) {
		t.Error("a session started under an old epoch works")
	}
	// Sessions expire.
	cookie = start(ann)
	c.add(SessionIdle + time.Second)
	if live(cookie) {
		t.Error("a session idle for longer than the limit works")
	}
	if _, err := s.Session(ctx, "garbage", ""); !errors.Is(err, ErrNoSession) {
		t.Errorf("a garbage cookie: %v", err)
	}
}

func TestTOTPCodesCountOnce(t *testing.T) {
	s, c := newTestStore(t, Options{Issuer: "The Test Weekly"})
	ctx := context.Background()
	ed := active(t, s, "ann@example.org", Admin)
	setup, err := s.BeginTOTP(ctx, ed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(setup.URL, "otpauth://totp/The%20Test%20Weekly:ann@example.org?") || !strings.HasPrefix(setup.QRPNG, "data:image/png;base64,") {
		t.Errorf("setup %q", setup.URL)
	}
	var sealed []byte
	s.db.Get(&sealed, `SELECT totp_pending FROM editors WHERE id = $1`, ed.ID)
	if strings.Contains(string(sealed), setup.Secret) {
		t.Error("the TOTP secret is stored in the clear")
	}
	if _, err := s.ConfirmTOTP(ctx, ed.ID, "000000"); !errors.Is(err, ErrCredentials) && TOTPCode(setup.Secret, c.now()) != "000000" {
		t.Errorf("a wrong code: %v", err)
	}
	code := TOTPCode(setup.Secret, c.now())
	if _, err := s.ConfirmTOTP(ctx, ed.ID, code); err != nil {
		t.Fatal(err)
	}
	ed, _, err = s.Login(ctx, "192.0.2.1", "ann@example.org", pw, 0)
	if err != nil || !ed.TOTP {
		t.Fatalf("login: %v, TOTP %v", err, ed.TOTP)
	}
	cookie, _ := s.StartSession(ctx, ed, StageCode, "", "", "")
	sess, err := s.Session(ctx, cookie, "")
	if err != nil || sess.Stage != StageCode {
		t.Fatalf("code-stage session: %v %q", err, sess.Stage)
	}
	// The code that switched TOTP on does not log in: each code counts once.
	if _, err := s.LoginCode(ctx, "192.0.2.1", sess, code, false); !errors.Is(err, ErrCredentials) {
		t.Errorf("the confirming code again: %v, want ErrCredentials", err)
	}
	c.add(30 * time.Second)
	next := TOTPCode(setup.Secret, c.now())
	if _, err := s.LoginCode(ctx, "192.0.2.1", sess, next, false); err != nil {
		t.Fatalf("the next code: %v", err)
	}
	if _, err := s.LoginCode(ctx, "192.0.2.1", sess, next, false); !errors.Is(err, ErrCredentials) {
		t.Errorf("the same code twice: %v, want ErrCredentials", err)
	}
	// A sealed secret opens only for its own editor, under its own key.
	other := NewStore(s.db, []byte("another-secret-0123456789abcdef012345"), Options{})
	if _, err := other.PendingTOTP(ctx, ed.ID); err == nil {
		t.Error("pending secret without a pending setup")
	}
	if _, err := other.seal.open(ed.ID, sealed); err == nil {
		t.Error("a secret sealed under one key opens under another")
	}
	if _, err := s.seal.open(ed.ID+1, sealed); err == nil {
		t.Error("a secret sealed for one editor opens for another")
	}
}

func TestLastAdmin(t *testing.T) {
	s, _ := newTestStore(t, Options{})
	ctx := context.Background()
	ann := active(t, s, "ann@example.org", Admin)
	bob := active(t, s, "bob@example.org", Publisher)
	for name, f := range map[string]func() error{
		"Demote":  func() error { _, err := s.SetRole(ctx, ann.ID, Writer); return err },
		"Disable": func() error { _, err := s.Disable(ctx, ann.ID); return err },
		"Delete":  func() error { _, err := s.Delete(ctx, ann.ID); return err },
	} {
		if err := f(); !errors.Is(err, ErrLastAdmin) {
			t.Errorf("%s the last admin: %v, want ErrLastAdmin", name, err)
		}
	}
	if _, err := s.SetRole(ctx, bob.ID, Admin); err != nil {
		t.Fatal(err)
	}
	// Two admins demoting each other at once: one of them stays an admin.
	var wg sync.WaitGroup
	wg.Go(func() { s.SetRole(ctx, ann.ID, Writer) })
	wg.Go(func() { s.SetRole(ctx, bob.ID, Writer) })
	wg.Wait()
	var n int
	s.db.Get(&n, `SELECT count(*) FROM editors WHERE role = 'admin' AND disabled_at IS NULL`)
	if n != 1 {
		t.Errorf("%d enabled admins after both demoted each other, want 1", n)
	}
}

// TestLoginThrottleCountsBeforeComparing: attempts at once from one client are recorded before
// any password is compared, so no more than the limit are compared.
func TestLoginThrottleCountsBeforeComparing(t *testing.T) {
	s, c := newTestStore(t, Options{})
	ctx := context.Background()
	active(t, s, "ann@example.org", Writer)
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for range 40 {
		wg.Go(func() {
			_, _, err := s.Login(ctx, "192.0.2.9", "ann@example.org", "wrong password!", 0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, ErrCredentials):
				counts["compared"]++
			case errors.Is(err, ErrThrottled):
				counts["throttled"]++
			default:
				counts[err.Error()]++
			}
		})
	}
	wg.Wait()
	if counts["compared"] != ClientLimit || counts["throttled"] != 40-ClientLimit {
		t.Errorf("40 at once: %v, want %d compared", counts, ClientLimit)
	}
	// A success is forgotten; the window moves.
	c.add(LoginWindow + time.Second)
	for range ClientLimit + 2 {
		if _, _, err := s.Login(ctx, "192.0.2.9", "ann@example.org", pw, 0); err != nil {
			t.Fatalf("right password: %v", err)
		}
	}
}

func TestSharedPassword(t *testing.T) {
	s, _ := newTestStore(t, Options{SharedPassword: "old shared password"})
	ctx := context.Background()
	if _, err := s.SharedLogin(ctx, "192.0.2.1", "wrong", false); !errors.Is(err, ErrCredentials) {
		t.Errorf("wrong: %v", err)
	}
	ed, err := s.SharedLogin(ctx, "192.0.2.1", "old shared password", false)
	if err != nil || !ed.Shared || ed.Role != Admin || ed.Label() != SharedName {
		t.Fatalf("shared login: %+v %v", ed, err)
	}
	cookie, err := s.StartSession(ctx, ed, StageFull, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, cookie, ""); err != nil {
		t.Fatalf("shared session: %v", err)
	}
	// Another password (a restart with a new one) ends it.
	other := NewStore(s.db, []byte("editors-test-secret-0123456789abcdef"), Options{SharedPassword: "new shared password"})
	if _, err := other.Session(ctx, cookie, ""); !errors.Is(err, ErrNoSession) {
		t.Errorf("the session under another shared password: %v", err)
	}
	// An invited editor leaves it; one with a password retires it.
	ann, link, _ := s.Add(ctx, "ann@example.org", "", Admin)
	if _, err := s.Session(ctx, cookie, ""); err != nil {
		t.Errorf("shared session after an invitation: %v", err)
	}
	s.UseLink(ctx, link.Token, pw)
	if _, err := s.Session(ctx, cookie, ""); !errors.Is(err, ErrNoSession) {
		t.Errorf("shared session once %s has a password: %v", ann.Email, err)
	}
	if _, err := s.SharedLogin(ctx, "192.0.2.1", "old shared password", false); !errors.Is(err, ErrSharedRetired) {
		t.Errorf("shared login once an editor has a password: %v", err)
	}
}

// TestAuditAppendOnly: the trigger of migration 0014 refuses UPDATE, DELETE and TRUNCATE of the
// audit log, whoever asks.
func TestAuditAppendOnly(t *testing.T) {
	s, _ := newTestStore(t, Options{})
	ctx := context.Background()
	if err := s.Audit(ctx, AuditEntry{Actor: CLIActor, Action: "readers.export", Detail: "12 rows"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, AuditEntry{Actor: CLIActor, Action: "reader.view", Target: "ann@example.org"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an address as target: %v, want ErrInvalid", err)
	}
	for _, stmt := range []string{`UPDATE audit_log SET detail = 'nothing'`, `DELETE FROM audit_log`, `TRUNCATE audit_log`} {
		_, err := s.db.ExecContext(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refused as append-only", stmt, err)
		}
	}
	rows, err := s.AuditLog(ctx, AuditFilter{Actor: CLIActor})
	if err != nil || len(rows) != 1 || rows[0].Detail != "12 rows" {
		t.Errorf("after the refusals: %+v %v", rows, err)
	}
}

func TestAuditFilter(t *testing.T) {
	s, c := newTestStore(t, Options{})
	ctx := context.Background()
	ann := active(t, s, "ann@example.org", Admin)
	for i, e := range []AuditEntry{
		{Editor: ann, Action: "issue.approve", Object: "issue 7"},
		{Editor: ann, Action: "issue.send", Object: "issue 7"},
		{Editor: ann, Action: "issue.approve", Object: "issue 70"},
		{Actor: CLIActor, Action: "readers.import", Detail: "3 rows"},
		{Editor: ann, Action: "article.hide", Object: "article 7"},
	} {
		c.add(24 * time.Hour)
		if err := s.Audit(ctx, e); err != nil {
			t.Fatal(i, err)
		}
	}
	count := func(f AuditFilter) int {
		rows, err := s.AuditLog(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	for name, c := range map[string]struct {
		f    AuditFilter
		want int
	}{
		"All":        {AuditFilter{}, 5},
		"Actor":      {AuditFilter{Actor: "ann@example.org"}, 4},
		"CLI":        {AuditFilter{Actor: CLIActor}, 1},
		"Action":     {AuditFilter{Action: "issue.approve"}, 2},
		"Object":     {AuditFilter{Object: "issue 7"}, 2},
		"ObjectKind": {AuditFilter{Object: "issue"}, 3},
		"Wildcards":  {AuditFilter{Object: "%"}, 0},
		"From":       {AuditFilter{From: c.now().Add(-36 * time.Hour)}, 2},
		"To":         {AuditFilter{To: c.now().Add(-36 * time.Hour)}, 3},
		"Page":       {AuditFilter{Limit: 2}, 2},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: %d rows, want %d", name, got, c.want)
		}
	}
	first, _ := s.AuditLog(ctx, AuditFilter{Limit: 2})
	if rest := count(AuditFilter{Before: first[1].ID}); rest != 3 {
		t.Errorf("the page after: %d rows, want 3", rest)
	}
}
