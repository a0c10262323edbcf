// Package migrations holds the numbered SQL files that build the schema, embedded in the binary.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Apply runs every pending migration, each in its own transaction. A Postgres advisory lock makes
// concurrent callers (several `serve` processes starting at once) wait instead of racing.
func Apply(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	return apply(ctx, db, log, 0)
}

// ApplyTo runs the pending migrations up to version and no further: the tests of a migration
// load a database in the schema before it.
func ApplyTo(ctx context.Context, db *sql.DB, version int64) error {
	return apply(ctx, db, nil, version)
}

// apply runs the pending migrations up to version (0: all of them).
func apply(ctx context.Context, db *sql.DB, log *slog.Logger, version int64) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithSessionLocker(locker),
		// Numbers are taken by parallel work before it lands, so one may land after a higher
		// one: a database that has the higher one gets the lower one next, rather than refusing.
		goose.WithAllowOutofOrder(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var results []*goose.MigrationResult
	if version > 0 {
		results, err = p.UpTo(ctx, version)
	} else {
		results, err = p.Up(ctx)
	}
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, r := range results {
		log.Info("migration applied", "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}
