// Package testdb gives each test its own throwaway PostgreSQL database with every migration applied.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"newsletter/internal/pgdb"
	"newsletter/migrations"
)

// ServerURL is the PostgreSQL server the tests use: NEWSLETTER_TEST_DATABASE_URL, else the local
// default. Tests fail (never skip) when it cannot be reached.
func ServerURL() string {
	if v := os.Getenv("NEWSLETTER_TEST_DATABASE_URL"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// URL creates an empty database and returns its URL; it is dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "newsletter_test_" + hex.EncodeToString(b)
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatalf("test database url: %v", err)
	}
	admin, err := sqlx.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + pq.QuoteIdentifier(name)); err != nil {
		admin.Close()
		t.Fatalf("PostgreSQL must run for the tests (%s): %v", pgdb.Redact(u.String()), err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// New returns a connection to a fresh, migrated database of the test's own.
func New(t testing.TB) *sqlx.DB {
	t.Helper()
	ctx := context.Background()
	db, err := pgdb.Open(ctx, URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	return db
}
