package main

import (
	"context"
	"errors"
)

// ingest runs `newsletter ingest`: every configured feed once.
func (a *App) ingest(ctx context.Context, args []string) error {
	return errors.New("ingest: not implemented yet")
}
