package main

import (
	"context"
	"errors"
)

// digestSend runs `newsletter digest send`.
func (a *App) digestSend(ctx context.Context, args []string) error {
	return errors.New("digest send: not implemented yet")
}
