package main

import (
	"testing"

	"github.com/jmoiron/sqlx"
)

// subscribeAll gives every reader a test wrote straight into the table an active subscription to
// the digest of their language, as their confirmation would have.
func subscribeAll(t testing.TB, db *sqlx.DB) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscriptions (subscriber_id, newsletter_id)
		SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang
		ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
}
