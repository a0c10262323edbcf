package subscribers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"newsletter/internal/textclean"
	"newsletter/newsletters"
)

// Readers choose their newsletters on the manage page: a toggle per newsletter the form offers and
// per newsletter they have a subscription to. Turning one on is consent given there (the signed
// link proves the address); turning one off leaves it; leaving the last one is unsubscribing.

// KeyNoReturn is the message for a bounced or complained reader who turns a newsletter on from the
// manage page: their address gets no mail by its status, and only a confirmed request (the
// subscribe form's confirmation email) may bring it back.
const (
	KeyNoReturn          = "subscribers.error.no_return"
	KeyNewsletterUnknown = "subscribers.error.newsletter"
)

// ErrNoReturn is the error behind KeyNoReturn.
var ErrNoReturn = &FieldError{"newsletters", KeyNoReturn}

// Choice is one newsletter as the manage page offers it to a reader: Active where their
// subscription to it is.
type Choice struct {
	newsletters.Newsletter
	Active bool
}

// choiceRow is a newsletter offered to one reader, with the state of their subscription.
type choiceRow struct {
	ID     int64 `db:"id"`
	Active bool  `db:"active"`
}

// offeredSQL lists the newsletters offered to reader $1: those on the form and those they have a
// subscription to (active or left, so one they left can be taken again).
const offeredSQL = `
	SELECT n.id, coalesce(sub.state = 'active', false) AS active
	FROM newsletters n
	LEFT JOIN subscriptions sub ON sub.newsletter_id = n.id AND sub.subscriber_id = $1
	WHERE n.on_form OR sub.subscriber_id IS NOT NULL`

// Choices returns the newsletters offered to the reader with uuid, in newsletters.List's order.
func (s *Store) Choices(ctx context.Context, uuid string) ([]Choice, error) {
	sub, err := s.ByUUID(ctx, uuid)
	if err != nil {
		return nil, err
	}
	var rows []choiceRow
	if err := s.db.SelectContext(ctx, &rows, offeredSQL, sub.ID); err != nil {
		return nil, fmt.Errorf("choices: %w", err)
	}
	all, err := newsletters.List(ctx, s.db)
	if err != nil {
		return nil, err
	}
	out := make([]Choice, 0, len(rows))
	for _, n := range all {
		if i := slices.IndexFunc(rows, func(r choiceRow) bool { return r.ID == n.ID }); i >= 0 {
			out = append(out, Choice{Newsletter: n, Active: rows[i].Active})
		}
	}
	return out, nil
}

// ManageInput is what the manage page saves: the name and language, and, where Choose is set
// (the page showed its toggles), the newsletters ticked (On, by id) with the consent that turning
// one on gives.
type ManageInput struct {
	Name, Lang string
	Choose     bool
	On         []int64
	Consent    Consent // Source is set to "manage"
}

// ManageResult says what a save changed: the newsletters turned on and off, and whether the
// reader left the last one (so is now unsubscribed) or came back.
type ManageResult struct {
	TurnedOn, TurnedOff []int64
	Unsubscribed        bool
	Returned            bool
}

// Manage saves the manage page in one transaction, the reader's row locked. The language no
// longer moves any subscription: the toggles decide what the reader gets. Turning newsletters on
// records one consent (source 'manage', confirmed now) with a consent_newsletters row for each,
// and their subscriptions rest on it; a pending or unsubscribed reader who turns one on is
// confirmed (the link proves the address); a bounced or complained one is refused (ErrNoReturn)
// and nothing is saved. Turning the last active one off unsubscribes the reader, as the
// unsubscribe link does, with a reader event of source 'manage'. An id the page could not have
// offered is a FieldError.
func (s *Store) Manage(ctx context.Context, uuid string, in ManageInput) (Subscriber, ManageResult, error) {
	var res ManageResult
	name, err := ValidateName(in.Name)
	if err != nil {
		return Subscriber{}, res, err
	}
	if !validLang(in.Lang) {
		return Subscriber{}, res, &FieldError{"lang", KeyLangInvalid}
	}
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, res, ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Subscriber{}, res, fmt.Errorf("manage: %w", err)
	}
	defer tx.Rollback()
	var sub Subscriber
	err = tx.GetContext(ctx, &sub, `UPDATE subscribers SET name = $2, lang = $3,
			updated_at = CASE WHEN name = $2 AND lang = $3 THEN updated_at ELSE now() END
		WHERE uuid = $1 RETURNING `+subscriberColumns, uuid, name, in.Lang)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, res, ErrNotFound
	}
	if err != nil {
		return sub, res, fmt.Errorf("manage: %w", err)
	}
	if in.Choose {
		if sub, res, err = s.choose(ctx, tx, sub, in); err != nil {
			return sub, res, err
		}
	}
	if err := tx.Commit(); err != nil {
		return sub, res, fmt.Errorf("manage: %w", err)
	}
	return sub, res, nil
}

// choose applies the toggles of in to the reader sub, whose row tx holds.
func (s *Store) choose(ctx context.Context, tx *sqlx.Tx, sub Subscriber, in ManageInput) (Subscriber, ManageResult, error) {
	var res ManageResult
	var rows []choiceRow
	if err := tx.SelectContext(ctx, &rows, offeredSQL, sub.ID); err != nil {
		return sub, res, fmt.Errorf("manage: %w", err)
	}
	active := 0
	for _, id := range in.On {
		if !slices.ContainsFunc(rows, func(r choiceRow) bool { return r.ID == id }) {
			return sub, res, &FieldError{"newsletters", KeyNewsletterUnknown}
		}
	}
	for _, r := range rows {
		on := slices.Contains(in.On, r.ID)
		switch {
		case on && !r.Active:
			res.TurnedOn = append(res.TurnedOn, r.ID)
		case !on && r.Active:
			res.TurnedOff = append(res.TurnedOff, r.ID)
		}
		if on {
			active++
		}
	}
	if len(res.TurnedOn) > 0 {
		if sub.Status == StatusBounced || sub.Status == StatusComplained {
			return sub, ManageResult{}, ErrNoReturn
		}
		if err := s.turnOn(ctx, tx, sub.ID, sub.Lang, res.TurnedOn, in.Consent); err != nil {
			return sub, res, err
		}
		if sub.Status == StatusPending || sub.Status == StatusUnsubscribed {
			res.Returned = true
			if err := tx.GetContext(ctx, &sub, `UPDATE subscribers SET status = 'confirmed', confirmed_at = now(),
					subscribed_at = CASE WHEN status = 'pending' THEN subscribed_at ELSE now() END, updated_at = now()
				WHERE id = $1 RETURNING `+subscriberColumns, sub.ID); err != nil {
				return sub, res, fmt.Errorf("manage: %w", err)
			}
		}
	}
	if len(res.TurnedOff) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE subscriptions SET state = 'left', left_at = now()
			WHERE subscriber_id = $1 AND newsletter_id = ANY($2::bigint[]) AND state = 'active'`,
			sub.ID, pq.Array(res.TurnedOff)); err != nil {
			return sub, res, fmt.Errorf("manage: %w", err)
		}
		if active == 0 && (sub.Status == StatusConfirmed || sub.Status == StatusPending) {
			res.Unsubscribed = true
			if err := tx.GetContext(ctx, &sub, `
				WITH gone AS (
					UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
					WHERE id = $1 RETURNING `+subscriberColumns+`
				), ev AS (
					INSERT INTO reader_events (kind, subscriber_id, source, external_id, occurred_at, effect)
					SELECT 'unsubscribe', g.id, 'manage',
						'manage:' || g.uuid::text || ':' || (extract(epoch FROM g.unsubscribed_at) * 1000000)::bigint,
						g.unsubscribed_at, 'unsubscribed'
					FROM gone g
					ON CONFLICT (source, external_id) DO NOTHING
				)
				SELECT `+subscriberColumns+` FROM gone`, sub.ID); err != nil {
				return sub, res, fmt.Errorf("manage: %w", err)
			}
		}
	}
	return sub, res, nil
}

// ManageTextVersion names the wording beside the manage page's toggles
// ("subscribers.manage.newsletters_text" in templates/i18n/manage.*.json), as a consent of source 'manage' records it.
const ManageTextVersion = "manage-2026-12"

// turnOn records the consent of a manage page save and makes the reader's subscriptions to ids
// active on it.
func (s *Store) turnOn(ctx context.Context, tx *sqlx.Tx, subscriberID int64, lang string, ids []int64, c Consent) error {
	version := c.TextVersion
	if version == "" {
		version = ManageTextVersion
	}
	var consentID int64
	if err := tx.GetContext(ctx, &consentID, `
		INSERT INTO consents (subscriber_id, ip, user_agent, source, text_version, confirmed_at, lang)
		VALUES ($1, $2, $3, 'manage', $4, now(), $5) RETURNING id`,
		subscriberID, textclean.ClipBytes(c.IP, 64), ReduceUserAgent(c.UserAgent), textclean.ClipBytes(version, 64), lang); err != nil {
		return fmt.Errorf("manage: consent: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO consent_newsletters (consent_id, newsletter_id)
		SELECT $1, unnest($2::bigint[])`, consentID, pq.Array(ids)); err != nil {
		return fmt.Errorf("manage: consent: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO subscriptions AS sub (subscriber_id, newsletter_id, consent_id)
		SELECT $1, unnest($2::bigint[]), $3
		ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET
			consent_id = EXCLUDED.consent_id, import_id = NULL,
			created_at = CASE WHEN sub.state = 'left' THEN now() ELSE sub.created_at END,
			state = 'active', left_at = NULL`, subscriberID, pq.Array(ids), consentID); err != nil {
		return fmt.Errorf("manage: subscriptions: %w", err)
	}
	return nil
}
