package bounce

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// IMAPConfig says where the bounce mailbox is and where handled messages go.
type IMAPConfig struct {
	Addr               string // host:port
	Security           string // "tls" (implicit), "starttls" (insisted on) or "none"
	Username, Password string
	Mailbox            string // read from; default INBOX
	Processed          string // handled reports move here; default "Processed"
	Unhandled          string // what no rule understood moves here, flagged, for a human; default "Unhandled"
}

// ParseIMAPURL reads the bounce mailbox's URL (NEWSLETTER_BOUNCE_IMAP_URL):
//
//	imaps://USER:PASSWORD@HOST[:993][/MAILBOX][?processed=FOLDER&unhandled=FOLDER]
//	imap://USER:PASSWORD@HOST[:143][/MAILBOX][?tls=none&...]
//
// imap:// insists on STARTTLS (the password must not cross the network in clear); ?tls=none
// allows plain IMAP, for a server on the same machine.
func ParseIMAPURL(s string) (IMAPConfig, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url's error repeats the URL, password included.
		return IMAPConfig{}, errors.New("bounce IMAP URL: not a URL")
	}
	c := IMAPConfig{Mailbox: "INBOX", Processed: "Processed", Unhandled: "Unhandled"}
	port := ""
	switch u.Scheme {
	case "imaps":
		c.Security, port = "tls", "993"
	case "imap":
		c.Security, port = "starttls", "143"
	default:
		return c, fmt.Errorf("bounce IMAP URL: scheme %q, want imap or imaps", u.Scheme)
	}
	if u.Hostname() == "" {
		return c, errors.New("bounce IMAP URL: no host")
	}
	if u.Port() != "" {
		port = u.Port()
	}
	c.Addr = net.JoinHostPort(u.Hostname(), port)
	if u.User == nil || u.User.Username() == "" {
		return c, errors.New("bounce IMAP URL: no user")
	}
	c.Username = u.User.Username()
	c.Password, _ = u.User.Password()
	if m := strings.Trim(u.Path, "/"); m != "" {
		c.Mailbox = m
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "tls", "processed", "unhandled":
		default:
			return c, fmt.Errorf("bounce IMAP URL: unknown parameter %q", k)
		}
	}
	switch q.Get("tls") {
	case "":
	case "none":
		if u.Scheme == "imaps" {
			return c, errors.New("bounce IMAP URL: imaps with tls=none")
		}
		c.Security = "none"
	case "required":
	default:
		return c, fmt.Errorf("bounce IMAP URL: tls=%q, want none or required", q.Get("tls"))
	}
	if v := q.Get("processed"); v != "" {
		c.Processed = v
	}
	if v := q.Get("unhandled"); v != "" {
		c.Unhandled = v
	}
	if c.Processed == c.Mailbox || c.Unhandled == c.Mailbox {
		return c, errors.New("bounce IMAP URL: the processed and unhandled folders must differ from the mailbox read")
	}
	return c, nil
}

// IMAPIntake reads the bounce mailbox: each Poll handles what is in it and moves it out.
type IMAPIntake struct {
	Config   IMAPConfig
	Parser   *Parser
	Recorder Recorder
	// Log receives one line per message that is not recorded, and per failure (nil: none).
	Log *slog.Logger
	// TLSConfig for imaps and STARTTLS (nil: the system's roots, the URL's host name).
	TLSConfig *tls.Config
	// Batch is how many messages one round reads and records at once (default 50).
	Batch int
	// MaxSize is the largest message parsed (default 10 MiB); a larger one is unhandled.
	MaxSize int64
}

// PollResult counts what one Poll did.
type PollResult struct {
	Recorded  int // reports whose event was recorded, moved to Processed
	Ignored   int // reports that call for nothing (delay warnings, auto-replies), moved to Processed
	Unhandled int // messages for a human, flagged and moved to Unhandled
}

// Poll reads every message in the mailbox once: each is parsed, the events of a batch are
// recorded together, and only then are the messages moved (reports to Processed; the rest,
// flagged, to Unhandled), so nothing is lost: a message whose event could not be recorded stays
// where it is for the next Poll, and one recorded but not moved is recorded again harmlessly
// (the recorder is idempotent per ExternalID). Missing folders are created.
func (in *IMAPIntake) Poll(ctx context.Context) (PollResult, error) {
	var res PollResult
	log := in.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := in.dial(ctx)
	if err != nil {
		return res, fmt.Errorf("bounce IMAP: %w", err)
	}
	defer c.Close()
	// The client's calls block on the network: closing the connection is what ends them.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	wrap := func(what string, err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if what == "" {
			return fmt.Errorf("bounce IMAP: %w", err)
		}
		return fmt.Errorf("bounce IMAP: %s: %w", what, err)
	}
	if err := c.Login(in.Config.Username, in.Config.Password).Wait(); err != nil {
		return res, wrap("login", err)
	}
	for _, folder := range []string{in.Config.Processed, in.Config.Unhandled} {
		if err := ensureMailbox(c, folder); err != nil {
			return res, wrap("create "+folder, err)
		}
	}
	if _, err := c.Select(in.Config.Mailbox, nil).Wait(); err != nil {
		return res, wrap("select", err)
	}
	batch := in.Batch
	if batch <= 0 {
		batch = 50
	}
	for {
		data, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err != nil {
			return res, wrap("search", err)
		}
		uids := data.AllUIDs()
		if len(uids) == 0 {
			break
		}
		slices.Sort(uids)
		n, err := in.round(ctx, c, uids[:min(len(uids), batch)], log)
		res.Recorded += n.Recorded
		res.Ignored += n.Ignored
		res.Unhandled += n.Unhandled
		if err != nil {
			return res, wrap("", err)
		}
	}
	if err := c.Logout().Wait(); err != nil && ctx.Err() != nil {
		return res, wrap("logout", err)
	}
	return res, nil
}

// round handles one batch of messages.
func (in *IMAPIntake) round(ctx context.Context, c *imapclient.Client, uids []imap.UID, log *slog.Logger) (PollResult, error) {
	var res PollResult
	maxSize := in.MaxSize
	if maxSize <= 0 {
		maxSize = 10 << 20
	}
	var recorded, ignored, unhandled imap.UIDSet
	var events []Event
	section := &imap.FetchItemBodySection{Peek: true} // reading must not mark them seen
	fetch := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	seen := map[imap.UID]bool{}
	for msg := fetch.Next(); msg != nil; msg = fetch.Next() {
		var uid imap.UID
		var raw []byte
		var readErr error
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataBodySection:
				if item.Literal != nil {
					raw, readErr = io.ReadAll(io.LimitReader(item.Literal, maxSize+1))
				}
			}
		}
		if uid == 0 || seen[uid] {
			continue
		}
		seen[uid] = true
		var ev Event
		var err error
		switch {
		case readErr != nil:
			err = fmt.Errorf("%w: reading: %v", ErrUnknown, readErr)
		case int64(len(raw)) > maxSize:
			err = fmt.Errorf("%w: larger than %d bytes", ErrUnknown, maxSize)
		default:
			ev, err = in.Parser.Parse(raw)
		}
		switch {
		case err == nil:
			events = append(events, ev)
			recorded.AddNum(uid)
		case errors.Is(err, ErrIgnored):
			ignored.AddNum(uid)
			log.Info("bounce mailbox: nothing to record", "uid", uint32(uid), "why", Reason(err.Error()))
		default:
			unhandled.AddNum(uid)
			log.Warn("bounce mailbox: left for a human", "uid", uint32(uid), "folder", in.Config.Unhandled, "why", Reason(err.Error()))
		}
	}
	if err := fetch.Close(); err != nil {
		return res, fmt.Errorf("fetch: %w", err)
	}
	// UIDs the server no longer had (expunged meanwhile by someone else) are simply gone.

	var recordErr error
	if len(events) > 0 {
		recordErr = in.Recorder.RecordEvents(ctx, events)
	}
	if len(unhandled) > 0 {
		if err := c.Store(unhandled, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
			return res, fmt.Errorf("flag: %w", err)
		}
		if _, err := c.Move(unhandled, in.Config.Unhandled).Wait(); err != nil {
			return res, fmt.Errorf("move to %s: %w", in.Config.Unhandled, err)
		}
		res.Unhandled = count(unhandled)
	}
	if len(ignored) > 0 {
		if _, err := c.Move(ignored, in.Config.Processed).Wait(); err != nil {
			return res, fmt.Errorf("move to %s: %w", in.Config.Processed, err)
		}
		res.Ignored = count(ignored)
	}
	if recordErr != nil {
		// The reports stay in the mailbox for the next Poll.
		return res, fmt.Errorf("record: %w", recordErr)
	}
	if len(recorded) > 0 {
		if _, err := c.Move(recorded, in.Config.Processed).Wait(); err != nil {
			return res, fmt.Errorf("move to %s: %w", in.Config.Processed, err)
		}
		res.Recorded = count(recorded)
	}
	if count(recorded)+count(ignored)+count(unhandled) == 0 {
		// Every UID searched for was gone by the fetch: searching again would find them again.
		return res, errors.New("the messages found could not be fetched")
	}
	return res, nil
}

func count(s imap.UIDSet) int {
	n, _ := s.Nums()
	return len(n)
}

// ensureMailbox creates the mailbox unless it exists.
func ensureMailbox(c *imapclient.Client, name string) error {
	list, err := c.List("", name, nil).Collect()
	if err != nil {
		return err
	}
	for _, l := range list {
		if l.Mailbox == name {
			return nil
		}
	}
	err = c.Create(name, nil).Wait()
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists {
		return nil // created meanwhile by another process
	}
	return err
}

// dial connects as the configuration says; the connection ends with ctx.
func (in *IMAPIntake) dial(ctx context.Context) (*imapclient.Client, error) {
	host, _, err := net.SplitHostPort(in.Config.Addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{}
	if in.TLSConfig != nil {
		cfg = in.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	opts := &imapclient.Options{TLSConfig: cfg}
	var d net.Dialer
	switch in.Config.Security {
	case "tls":
		cfg.NextProtos = []string{"imap"}
		conn, err := (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", in.Config.Addr)
		if err != nil {
			return nil, err
		}
		return imapclient.New(conn, opts), nil
	case "starttls", "":
		conn, err := d.DialContext(ctx, "tcp", in.Config.Addr)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		// Fails when the server offers no STARTTLS: never fall back to sending the password in clear.
		return imapclient.NewStartTLS(conn, opts)
	case "none":
		conn, err := d.DialContext(ctx, "tcp", in.Config.Addr)
		if err != nil {
			return nil, err
		}
		return imapclient.New(conn, opts), nil
	}
	return nil, fmt.Errorf("security %q", in.Config.Security)
}
