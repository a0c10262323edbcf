package send

import (
	"context"
	"time"
)

// StartDueEditions starts every approved edition whose scheduled time has come (within maxLate of
// it; later ones wait for an editor, see digest.Store.DueEditions) and returns how many this call
// started. Several processes may call it at once: each edition is started under a lock of its own,
// by the one that still finds it approved.
func (s *Sender) StartDueEditions(ctx context.Context, maxLate time.Duration) int {
	due, err := s.store.DueEditions(ctx, maxLate)
	if err != nil {
		s.log.Error("scheduled editions", "err", err)
		return 0
	}
	started := 0
	for _, id := range due {
		if s.startDue(ctx, id) {
			started++
		}
	}
	return started
}

func (s *Sender) startDue(ctx context.Context, id int64) bool {
	log := s.log.With("issue", id)
	conn, err := s.store.DB().Connx(ctx)
	if err != nil {
		log.Error("scheduled edition: connect", "err", err)
		return false
	}
	defer conn.Close()
	var locked bool
	if err := conn.GetContext(ctx, &locked, `SELECT pg_try_advisory_lock(hashtext('newsletter.edition.start'), $1::int)`, id); err != nil || !locked {
		return false // another process is starting it
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('newsletter.edition.start'), $1::int)`, id)
	var still bool
	if err := s.store.DB().GetContext(ctx, &still, `SELECT EXISTS (SELECT 1 FROM issues WHERE id = $1 AND status = 'approved'
		AND send_at IS NOT NULL AND send_at <= now())`, id); err != nil || !still {
		return false
	}
	n, err := s.Start(ctx, id)
	if err != nil {
		log.Error("scheduled edition: start", "err", err)
		return false
	}
	log.Info("scheduled edition: sending", "readers", n)
	return true
}

// RunEditionSchedule starts scheduled editions at their time, checking every interval, until ctx
// ends.
func (s *Sender) RunEditionSchedule(ctx context.Context, maxLate, interval time.Duration) error {
	for {
		s.StartDueEditions(ctx, maxLate)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
