package main

import (
	"context"
	"errors"
)

// digestCmd runs `newsletter digest preview|send`.
func (a *App) digestCmd(ctx context.Context, args []string) error {
	return errors.New("digest: not implemented yet")
}
