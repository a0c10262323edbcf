package main

import (
	"context"
	"errors"
	"strconv"

	digestweb "newsletter/digest/web"
	"newsletter/newsletters"
	"newsletter/subscribers"
)

// readerList is the reader list as the editors' readers' pages use it (digestweb.ReaderList):
// subscribers.Store, its errors in the pages' terms, and a wake-up for the confirmation mailer
// after a resend.
type readerList struct {
	store *subscribers.Store
	wake  interface{ Wake() } // nil: the mailer finds the email on its next round
}

// readerAuditEntries is how many audit entries a reader's page lists.
const readerAuditEntries = 20

// readerErr puts the store's errors in the pages' terms; others (a database that is away) pass
// as they are, for the pages' error table.
func readerErr(err error) error {
	var fe *subscribers.FieldError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, subscribers.ErrNotFound):
		return digestweb.ErrNoReader
	case errors.As(err, &fe) && fe.Field == "email":
		return digestweb.ErrNotAnAddress
	case errors.Is(err, subscribers.ErrNoResend):
		return digestweb.ErrReaderChanged
	}
	return err
}

func (l readerList) Summary(ctx context.Context, weeks int) (digestweb.ReaderSummary, error) {
	var out digestweb.ReaderSummary
	sum, err := l.store.Summary(ctx, weeks)
	if err != nil {
		return out, err
	}
	for _, c := range sum.Counts {
		out.Counts = append(out.Counts, digestweb.ReaderCount{Status: string(c.Status), Lang: c.Lang, N: c.N})
	}
	for _, w := range sum.Weeks {
		out.Weeks = append(out.Weeks, digestweb.WeekFigures{Start: w.Start, Confirmed: w.Confirmed, Unsubscribed: w.Unsubscribed,
			Bounced: w.Bounced, Complained: w.Complained})
	}
	for _, s := range sum.Suppressions {
		out.Suppressions = append(out.Suppressions, digestweb.ReasonCount{Reason: s.Reason, N: s.N})
	}
	return out, nil
}

func (l readerList) Find(ctx context.Context, email string) (string, error) {
	s, err := l.store.FindByEmail(ctx, email)
	return s.UUID, readerErr(err)
}

func (l readerList) Reader(ctx context.Context, uuid string) (digestweb.Reader, error) {
	rec, err := l.store.Reader(ctx, uuid)
	if err != nil {
		return digestweb.Reader{}, readerErr(err)
	}
	trail, err := l.store.AuditTrail(ctx, uuid, readerAuditEntries)
	if err != nil {
		return digestweb.Reader{}, readerErr(err)
	}
	s := rec.Subscriber
	r := digestweb.Reader{UUID: s.UUID, Email: s.Email, Name: s.Name, Lang: s.Lang, Status: string(s.Status), CreatedAt: s.CreatedAt,
		ConfirmedAt: s.ConfirmedAt, UnsubscribedAt: s.UnsubscribedAt, BouncedAt: s.BouncedAt, ComplainedAt: s.ComplainedAt,
		BounceReason: rec.BounceReason, NoResend: string(rec.Resend), ResendAfter: rec.ResendAfter}
	for _, c := range rec.Consents {
		r.Consents = append(r.Consents, digestweb.ReaderConsent{CreatedAt: c.CreatedAt, ConfirmedAt: c.ConfirmedAt, Open: c.Open,
			Source: c.Source, IP: c.IP, UserAgent: c.UserAgent, TextVersion: c.TextVersion, AskedName: c.Name.String, AskedLang: c.Lang.String,
			ImportID: c.ImportID, ImportedBy: c.ImportedBy, FileSHA256: c.FileSHA256, ImportRows: c.ImportRows})
	}
	for _, d := range rec.Deliveries {
		r.Deliveries = append(r.Deliveries, digestweb.ReaderDelivery{IssueID: d.IssueID, IssueLang: d.IssueLang, Status: d.Status,
			Attempts: d.Attempts, SentAt: d.SentAt, LastError: d.LastError})
	}
	for _, e := range rec.Events {
		r.Events = append(r.Events, digestweb.ReaderEvent{At: e.OccurredAt, Kind: e.Kind, Source: e.Source, Reason: e.Reason,
			Effect: e.Effect, IssueID: e.IssueID.Int64})
	}
	for _, sub := range rec.Subscriptions {
		r.Subscriptions = append(r.Subscriptions, readerSubscription(sub))
	}
	for _, a := range trail {
		r.Audit = append(r.Audit, digestweb.ReaderAudit{At: a.At, Actor: a.Actor, Action: a.Action, Detail: a.Detail})
	}
	return r, nil
}

func (l readerList) Unsubscribe(ctx context.Context, uuid string) error {
	_, err := l.store.Unsubscribe(ctx, uuid)
	return readerErr(err)
}

func (l readerList) Erase(ctx context.Context, uuid string) error {
	return readerErr(l.store.Erase(ctx, uuid))
}

func (l readerList) Resend(ctx context.Context, uuid string) error {
	if err := l.store.ResendConfirmation(ctx, uuid); err != nil {
		return readerErr(err)
	}
	if l.wake != nil {
		l.wake.Wake()
	}
	return nil
}

func (l readerList) SetLang(ctx context.Context, uuid, lang string) error {
	_, err := l.store.SetLang(ctx, uuid, lang)
	return readerErr(err)
}

// readerSubscription is one subscription as the reader page shows it, named in English (the
// editor pages' language).
func readerSubscription(sub subscribers.SubscriptionEntry) digestweb.ReaderSubscription {
	var names newsletters.Texts
	_ = names.Scan(sub.Names) // a name that cannot be read shows the slug
	n := newsletters.Newsletter{Slug: sub.Slug, Names: names}
	out := digestweb.ReaderSubscription{Slug: sub.Slug, Name: n.Name("en"), State: sub.State, Since: sub.CreatedAt, LeftAt: sub.LeftAt}
	switch {
	case sub.ConsentSource.Valid:
		out.RestsOn = sub.ConsentSource.String
	case sub.ImportID.Valid:
		out.RestsOn = "import #" + strconv.FormatInt(sub.ImportID.Int64, 10)
	}
	return out
}
